"""Properties of the sans-IO window policy (no store involved)."""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from chatkeep.policies.window import window_from_history
from chatkeep.types import StoredMessage, Summary

T0 = datetime(2025, 1, 1, tzinfo=timezone.utc)


def _msg(seq: int, role: str, tokens: int) -> StoredMessage:
    return StoredMessage(
        role=role,
        content="x",
        tool_call_id="c" if role == "tool" else None,  # type: ignore[arg-type]
        session_id="s",
        seq=seq,
        tokens=tokens,
        id=str(seq),
        created_at=T0,
    )


@st.composite
def histories(draw: st.DrawFn) -> list[StoredMessage]:
    specs = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["user", "assistant", "tool", "system", "developer"]),
                st.integers(1, 400),
            ),
            max_size=60,
        )
    )
    return [_msg(i + 1, role, tok) for i, (role, tok) in enumerate(specs)]


@st.composite
def cases(draw: st.DrawFn) -> tuple[list[StoredMessage], int, Summary | None, bool, int]:
    hist = draw(histories())
    budget = draw(st.integers(0, 3000))
    summary = None
    if hist and draw(st.booleans()):
        summary = Summary("s", draw(st.integers(0, len(hist))), draw(st.integers(1, 200)), T0)
    return hist, budget, summary, draw(st.booleans()), draw(st.integers(0, 100))


@settings(max_examples=400, deadline=None)
@given(cases())
def test_window_invariants(
    case: tuple[list[StoredMessage], int, Summary | None, bool, int],
) -> None:
    hist, budget, summary, pin, reserve = case
    w = window_from_history(hist, budget=budget, summary=summary, pin_system=pin, reserve=reserve)
    covered = summary.covers_through_seq if summary else 0
    pinned_roles = {"system", "developer"} if pin else set()
    windowable = [m for m in hist if m.role not in pinned_roles and m.seq > covered]
    users = [m for m in windowable if m.role == "user"]
    msgs = list(w.messages)

    # pinned system messages come first, all of them, in order
    assert list(w.system) == [m for m in hist if m.role in pinned_roles]
    # a contiguous suffix of the windowable messages, order preserved
    assert msgs == windowable[len(windowable) - len(msgs) :]
    # never starts on an assistant or tool message
    assert not msgs or msgs[0].role not in ("assistant", "tool")
    # the latest user message is always present
    if users:
        assert users[-1] in msgs
    # token accounting
    fixed = reserve + sum(m.tokens for m in w.system) + (summary.tokens if summary else 0)
    assert w.tokens == fixed + sum(m.tokens for m in msgs)
    # never over budget, except the flagged case where the latest user turn alone does not fit
    if w.over_budget:
        assert w.tokens > budget
        if users:
            assert msgs[0] == users[-1] or fixed > budget
    else:
        assert w.tokens <= budget
    # maximal: the next older windowable message would not fit (or would start on a bad role)
    if len(msgs) < len(windowable) and not w.over_budget:
        i = len(windowable) - len(msgs) - 1
        extended = windowable[i:]
        fits = fixed + sum(m.tokens for m in extended) <= budget
        assert not fits or extended[0].role in ("assistant", "tool")
    assert w.dropped == len(hist) - len(w.system) - len(msgs)


def test_empty_history() -> None:
    w = window_from_history([], budget=100)
    assert w.messages == () and w.tokens == 0 and not w.over_budget and w.last_seq == 0


def test_reserve_counts_against_budget() -> None:
    hist = [_msg(1, "user", 50), _msg(2, "assistant", 50), _msg(3, "user", 50)]
    assert len(window_from_history(hist, budget=150).messages) == 3
    assert [m.seq for m in window_from_history(hist, budget=150, reserve=10).messages] == [3]
