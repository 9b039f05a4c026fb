"""Conformance: every backend serves the same window as the reference policy."""

from __future__ import annotations

import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatkeep import Message
from chatkeep.policies import window_from_history

ROLES = ["user", "assistant", "tool", "system", "user", "assistant"]


@st.composite
def conversations(draw: st.DrawFn) -> list[Message]:
    n = draw(st.integers(0, 40))
    out = []
    for _ in range(n):
        role = draw(st.sampled_from(ROLES))
        text = "word " * draw(st.integers(0, 60))
        if role == "tool":
            out.append(Message.tool(text, tool_call_id="c1"))
        else:
            out.append(Message(role, text))  # type: ignore[arg-type]
    return out


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    msgs=conversations(),
    budget=st.integers(0, 600),
    reserve=st.integers(0, 50),
    pin=st.booleans(),
    summary_at=st.one_of(st.none(), st.floats(0, 1)),
)
def test_window_matches_reference(
    store: Any,
    msgs: list[Message],
    budget: int,
    reserve: int,
    pin: bool,
    summary_at: float | None,
) -> None:
    sid = uuid.uuid4().hex  # a fresh session per example
    if msgs:
        store.append(sid, msgs)
    summary = None
    if summary_at is not None:
        summary = store.put_summary(sid, "earlier: " + "x " * 20, int(summary_at * len(msgs)))
    got = store.window(sid, budget, pin_system=pin, reserve=reserve)
    want = window_from_history(
        store.read(sid), budget=budget, summary=summary, pin_system=pin, reserve=reserve
    )
    assert got == want


def test_window_on_missing_session_is_empty(store: Any) -> None:
    w = store.window("nobody", 100)
    assert w.messages == () and w.system == () and w.tokens == 0 and not w.over_budget


def test_window_keeps_the_newest_and_pins_system(store: Any) -> None:
    store.append(
        "s",
        [Message.system("You are kind.")]
        + [Message(("user", "assistant")[i % 2], f"turn {i} " + "w " * 30) for i in range(200)],
    )
    w = store.window("s", 500)
    assert [m.role for m in w.system] == ["system"]
    assert w.messages[-1].seq == 201 and w.tokens <= 500 and not w.over_budget
    assert w.messages[0].role == "user"
    seqs = [m.seq for m in w.messages]
    assert seqs == list(range(seqs[0], 202))
    assert w.dropped == 201 - 1 - len(w.messages)
    assert w.last_seq == 201
    assert w.to_openai()[0] == {"role": "system", "content": "You are kind."}


def test_latest_user_message_is_always_in(store: Any) -> None:
    store.append(
        "s", [Message.user("short"), Message.assistant("ok"), Message.user("huge " * 2000)]
    )
    w = store.window("s", 100)
    assert w.over_budget and [m.seq for m in w.messages] == [3]


def test_tool_result_stays_with_its_call(store: Any) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    store.append(
        "s",
        [
            Message.user("q " * 50),
            Message.assistant("", tool_calls=[call]),
            Message.tool("result " * 40, tool_call_id="c1"),
            Message.assistant("a"),
        ],
    )
    w = store.window("s", 90)
    assert all(m.role in ("user", "system") for m in w.messages[:1])
    assert "tool" not in [m.role for m in w.messages[:1]]
