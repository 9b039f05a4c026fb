"""Conformance: what a store returns is the caller's to mutate; storage never changes with it.

Every backend x sync/async. Each test mutates every list and dict reachable from a returned
object (content parts, tool calls, metadata, payload, session metadata) and proves a fresh read
is unchanged. In-process backends (memory://, file://'s cache) are the ones this can break.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

from chatkeep import Message

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'},
}


WHEN = datetime(2024, 5, 1, 12, 30, 15, tzinfo=timezone.utc)


def rich_messages() -> list[Message]:
    return [
        Message.system("rules", metadata={"v": 2, "tags": ["a"]}, created_at=WHEN),
        Message.user(
            [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            ],
            metadata={"nested": {"k": [1, 2]}},
            created_at=WHEN,
        ),
        Message.assistant(None, tool_calls=[copy.deepcopy(TOOL_CALL)], created_at=WHEN),  # type: ignore[arg-type]
        Message.tool('{"temp": 3}', tool_call_id="call_1", metadata={"ok": True}, created_at=WHEN),
        Message(
            "assistant",
            "done",
            format="langchain",
            payload={"type": "ai", "data": {"content": "done", "ids": ["run-1"]}},
            created_at=WHEN,
        ),
    ]


def _vandalize(value: Any) -> int:
    """Mutate every dict and list reachable from ``value`` in place; count what was mutated."""
    n = 0
    if isinstance(value, dict):
        for v in list(value.values()):
            n += _vandalize(v)
        value.clear()
        value["vandal"] = True
        n += 1
    elif isinstance(value, list):
        for v in value:
            n += _vandalize(v)
        value.clear()
        value.append({"type": "text", "text": "vandal"})
        n += 1
    return n


def _vandalize_message(m: Any) -> int:
    return sum(_vandalize(v) for v in (m.content, m.tool_calls, m.metadata, m.payload))


def _snapshot(store: Any, sid: str) -> Any:
    w = store.window(sid, 100_000)
    info = store.info(sid)
    return (
        [m.to_dict() for m in store.read(sid)],
        [m.to_dict() for m in (*w.system, *w.messages)],
        info.metadata,
        store.last(sid).to_dict(),
    )


def test_mutating_returned_messages_never_changes_storage(store: Any) -> None:
    sid = "s"
    result = store.append(sid, rich_messages())
    store.update_session(sid, metadata={"owner": {"name": "ada", "roles": ["admin"]}})
    before = _snapshot(store, sid)
    w = store.window(sid, 100_000)
    mutated = sum(_vandalize_message(m) for m in result.messages)
    mutated += sum(_vandalize_message(m) for m in store.read(sid))
    mutated += sum(_vandalize_message(m) for m in store.read(sid, limit=2, newest=True))
    mutated += sum(_vandalize_message(m) for m in (*w.system, *w.messages))
    mutated += _vandalize_message(store.last(sid))
    mutated += _vandalize(store.info(sid).metadata)
    mutated += sum(_vandalize(s.metadata) for s in store.sessions().items)
    assert mutated > 40  # the test really did reach into every mutable part
    assert _snapshot(store, sid) == before
    assert [m.message() for m in store.read(sid)] == rich_messages()


def test_rich_messages_round_trip(store: Any) -> None:
    store.append("s", rich_messages())
    assert [m.message() for m in store.read("s")] == rich_messages()


def test_replayed_append_and_update_results_are_copies(store: Any) -> None:
    sid = "s"
    first = store.append(sid, rich_messages(), idempotency_key="k1")
    replay = store.append(sid, rich_messages(), idempotency_key="k1")
    assert replay.replayed and replay.first_seq == first.first_seq
    info = store.update_session(sid, metadata={"deep": {"list": [1, {"x": 2}]}})
    before = _snapshot(store, sid)
    assert sum(_vandalize_message(m) for m in replay.messages) > 10
    assert _vandalize(info.metadata) >= 3
    assert _snapshot(store, sid) == before


def test_mutating_what_was_appended_never_changes_storage(store: Any) -> None:
    sid = "s"
    msgs = rich_messages()
    meta = {"owner": {"roles": ["admin"]}}
    store.append(sid, msgs)
    store.update_session(sid, metadata=meta)
    before = _snapshot(store, sid)
    assert sum(_vandalize_message(m) for m in msgs) > 10
    assert _vandalize(meta) >= 3
    assert _snapshot(store, sid) == before


def test_replace_neither_keeps_nor_hands_out_live_state(store: Any) -> None:
    sid = "s"
    store.append(sid, Message.user("old"))
    msgs = rich_messages()
    result = store.replace(sid, msgs)
    before = _snapshot(store, sid)
    assert sum(_vandalize_message(m) for m in msgs) >= 10  # what the caller passed in
    assert sum(_vandalize_message(m) for m in result.messages) >= 10  # what replace returned
    assert _snapshot(store, sid) == before
    assert [m.message() for m in store.read(sid)] == rich_messages()
