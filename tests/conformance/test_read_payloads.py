"""Conformance: ``read_payloads`` is ``read`` with a framework's own items handed over bare.

Every backend x sync/async (and again with encryption at rest on, in
tests/reliability/test_encrypted_conformance.py). A message stored with the asked-for format
and a payload comes back as exactly that payload, any other message exactly as ``read`` returns
it, in the same order and for the same paging arguments; the payloads are the caller's.
"""

from __future__ import annotations

from typing import Any

from chatkeep import Message, StoredMessage

FMT = "openai-agents"


def mixed_messages() -> list[Message]:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    return [
        Message.system("rules"),
        Message.user("hi", format=FMT, payload={"role": "user", "content": "hi"}),
        Message.assistant(
            "",
            tool_calls=[call],
            format=FMT,
            payload={"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        ),
        Message.tool("42", tool_call_id="c1", format=FMT, payload={"type": "x", "output": [1]}),
        Message.assistant("plain"),  # written by the app itself: no payload
        Message.assistant("lc", format="langchain", payload={"type": "ai", "data": {}}),
        Message.user("no payload", format=FMT),  # the format alone is not enough
        Message.assistant(
            [{"type": "text", "text": "parts"}],
            format=FMT,
            payload={"type": "message", "role": "assistant", "content": [{"t": "parts"}]},
        ),
    ]


def expected(rows: list[StoredMessage]) -> list[Any]:
    return [m.payload if m.format == FMT and m.payload is not None else m for m in rows]


def test_read_payloads_is_read_with_bare_items(store: Any) -> None:
    sid = "s"
    store.append(sid, mixed_messages())
    got = store.read_payloads(sid, FMT)
    assert got == expected(store.read(sid))
    assert [type(r).__name__ for r in got] == [
        "StoredMessage", "dict", "dict", "dict", "StoredMessage", "StoredMessage",
        "StoredMessage", "dict",
    ]  # fmt: skip
    for kw in (
        {"limit": 3},
        {"limit": 3, "newest": True},
        {"after_seq": 5},
        {"after_seq": 2, "limit": 2, "newest": True},
    ):
        assert store.read_payloads(sid, FMT, **kw) == expected(store.read(sid, **kw)), kw
    assert store.read_payloads(sid, "langchain")[5] == {"type": "ai", "data": {}}
    assert store.read_payloads("nobody", FMT) == []


def test_read_payloads_hands_out_copies(store: Any) -> None:
    sid = "s"
    msgs = mixed_messages()
    store.append(sid, msgs)
    before = store.read_payloads(sid, FMT)
    mutated = 0
    for r in store.read_payloads(sid, FMT):
        if isinstance(r, dict):
            r.clear()
            r["vandal"] = True
            mutated += 1
    assert mutated == 4
    assert store.read_payloads(sid, FMT) == before
    assert [m.message() for m in store.read(sid)] == msgs
