"""Quickstart: a conversation that survives a brand-new Python process.

    python examples/quickstart.py

Turn 1 runs in this process. Turn 2 runs in a *new* Python process (as after a
``uvicorn --reload``, a second worker or a restart) and still knows what was said, because the
memory lives in the store (``$CHATKEEP_URL``, default ``sqlite:///chatkeep.db``), not in a
Python object. Run it again and the conversation simply continues.

The replies come from a tiny offline responder (no LLM, no network) that answers only from the
window chatkeep hands it, so what it "remembers" is exactly what the store kept.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import chatkeep

SESSION = "quickstart-demo"


def offline_responder(messages: list[dict[str, Any]]) -> str:
    """A stand-in for an LLM call: answers from the messages it is given, nothing else."""
    question = str(messages[-1]["content"])
    said = " ".join(str(m["content"]) for m in messages[:-1] if m["role"] == "user")
    if "name" in question.lower() and "?" in question:
        names = re.findall(r"[Mm]y name is (\w+)", said)
        return f"Your name is {names[-1]}." if names else "I don't know your name yet."
    return "Noted."


def take_turn(text: str) -> None:
    with chatkeep.open_store() as store:
        memory = chatkeep.Memory(SESSION, store=store, system_prompt="You are a helpful bot.")
        with memory.turn(text) as turn:
            answer = offline_responder(turn.messages)
            turn.reply(answer)
        info = store.info(SESSION)
        assert info is not None
        print(f"  [pid {os.getpid()}] user: {text}")
        print(f"  [pid {os.getpid()}] bot:  {answer}   (offline demo responder)")
        print(
            f"  [pid {os.getpid()}] the session now holds {info.message_count} messages "
            f"in {store.url}"
        )


def main() -> None:
    if sys.argv[1:] == ["--turn"]:
        take_turn(sys.stdin.read().strip())
        return
    print("Turn 1, in this process:")
    take_turn("Hi! My name is Ada.")
    print("Turn 2, in a brand-new Python process:")
    subprocess.run(
        [sys.executable, __file__, "--turn"], input="What is my name?", text=True, check=True
    )
    print("The second process remembered: the conversation lives in the store.")


if __name__ == "__main__":
    main()
