"""What the LLM sees: the token window, pinned system prompt and a running summary.

python examples/window.py
"""

from __future__ import annotations

import chatkeep
from chatkeep import Message

with chatkeep.open_store() as store:
    sid = "window-demo"
    store.delete(sid)
    store.append(sid, Message.system("You are a travel agent."))
    for i in range(1, 41):
        store.append(
            sid,
            [
                Message.user(f"Question {i}: what about city number {i}?"),
                Message.assistant(f"City {i} is lovely in spring. " * 3),
            ],
        )

    window = store.window(sid, token_budget=400)
    print(
        f"{store.info(sid).message_count} messages stored; "  # type: ignore[union-attr]
        f"window: {len(window.system)} pinned + {len(window.messages)} newest, "
        f"{window.tokens}/{window.budget} tokens, {window.dropped} left out"
    )

    # Summarise everything before the window once; later windows start after it.
    first_in_window = window.messages[0].seq
    store.put_summary(
        sid,
        "The user asked about cities 1-30; all are lovely in spring.",
        covers_through_seq=first_in_window - 1,
    )
    window = store.window(sid, token_budget=400)
    for m in window.to_openai():
        print(f"  {m['role']:<9} {str(m['content']).replace(chr(10), ' ')[:70]}")
