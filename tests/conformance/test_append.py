"""Conformance: append and read (every backend x sync/async)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from chatkeep import (
    ConflictError,
    InvalidInput,
    InvalidMessage,
    InvalidSessionId,
    Limits,
    Message,
)

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "lookup", "arguments": '{"city": "Oslo"}'},
}


def test_seqs_are_one_based_and_gapless(store: Any) -> None:
    r1 = store.append("s", Message.user("a"))
    r2 = store.append("s", [Message.assistant("b"), Message.user("c")])
    assert (r1.first_seq, r1.last_seq) == (1, 1)
    assert (r2.first_seq, r2.last_seq) == (2, 3)
    assert [m.seq for m in store.read("s")] == [1, 2, 3]
    assert [m.text for m in store.read("s")] == ["a", "b", "c"]
    assert len({m.id for m in store.read("s")}) == 3


def test_round_trip_is_lossless(store: Any) -> None:
    when = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    msgs = [
        Message.system("rules", metadata={"v": 2}),
        Message.user(
            [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
            ],
            name="ada",
            created_at=when,
        ),
        Message.assistant(None, tool_calls=[TOOL_CALL]),  # type: ignore[arg-type]
        Message.tool('{"temp": 3}', tool_call_id="call_1"),
        Message(
            "assistant",
            "done",
            format="langchain",
            payload={"type": "ai", "data": {"content": "done", "id": "run-1"}},
        ),
        Message.user("nul \x00 and emoji \U0001f600 and 漢字"),
    ]
    result = store.append("s", msgs)
    back = store.read("s")
    assert [m.message() for m in back] == msgs
    assert [m.message() for m in result.messages] == msgs
    assert back[1].created_at == when
    assert back[2].tool_calls == [TOOL_CALL] and back[2].content == ""
    assert back[3].tool_call_id == "call_1"
    assert all(m.session_id == "s" and m.tokens > 0 for m in back)
    assert [m.id for m in back] == [m.id for m in result.messages]


def test_openai_dicts_are_accepted(store: Any) -> None:
    store.append(
        "s",
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
            {"role": "tool", "content": "ok", "tool_call_id": "call_1"},
        ],
    )
    assert [m.to_openai()["role"] for m in store.read("s")] == ["user", "assistant", "tool"]


@pytest.mark.parametrize(
    "bad",
    [
        [Message.user("ok"), {"role": "wizard", "content": "x"}],
        [Message.user("ok"), {"role": "user", "content": "x", "metadata": {"f": {1, 2}}}],
        [Message.user("ok"), {"role": "tool", "content": "orphan"}],
        [Message.user("ok"), {"role": "user", "content": "lone \ud800 surrogate"}],
        [Message.user("ok"), {"role": "user", "content": 42}],
        [],
    ],
)
def test_bad_batch_stores_nothing(store: Any, bad: list[Any]) -> None:
    store.append("s", Message.user("before"))
    with pytest.raises(InvalidMessage):
        store.append("s", bad)
    assert [m.text for m in store.read("s")] == ["before"]


@pytest.mark.parametrize("sid", ["", "   ", "a\nb", "tab\there", "x" * 257, "nul\x00", 7])
def test_bad_session_ids_are_rejected(store: Any, sid: Any) -> None:
    with pytest.raises(InvalidSessionId):
        store.append(sid, Message.user("x"))
    assert store.sessions().items == ()


def test_hostile_but_printable_ids_round_trip(store: Any) -> None:
    ids = [
        "../../etc/passwd",
        "a/b\\c",
        "'; DROP TABLE ck_messages; --",
        "用户-42",
        "x" * 256,
        "redis{tag}:*?",
    ]
    for sid in ids:
        store.append(sid, Message.user(sid))
    assert sorted(s.session_id for s in store.iter_sessions()) == sorted(ids)
    for sid in ids:
        assert store.read(sid)[0].text == sid


def test_oversized_message_is_rejected(open_any: Any) -> None:
    store = open_any(limits=Limits(max_message_bytes=1000))
    store.append("s", Message.user("x" * 900))
    with pytest.raises(InvalidMessage, match="limit is 1000"):
        store.append("s", [Message.user("fine"), Message.user("y" * 2000)])
    assert len(store.read("s")) == 1


def test_idempotency_key_replays_the_original(store: Any) -> None:
    first = store.append("s", [Message.user("a"), Message.assistant("b")], idempotency_key="k1")
    again = store.append("s", [Message.user("DIFFERENT")], idempotency_key="k1")
    assert again.replayed and not first.replayed
    assert (again.first_seq, again.last_seq) == (1, 2)
    assert [m.text for m in again.messages] == ["a", "b"]
    assert [m.id for m in again.messages] == [m.id for m in first.messages]
    assert len(store.read("s")) == 2
    # keys are per session
    other = store.append("t", Message.user("c"), idempotency_key="k1")
    assert not other.replayed


def test_expect_last_seq(store: Any) -> None:
    store.append("s", Message.user("a"), expect_last_seq=0)
    with pytest.raises(ConflictError) as err:
        store.append("s", Message.user("b"), expect_last_seq=0)
    assert (err.value.expected, err.value.actual) == (0, 1)
    store.append("s", Message.user("b"), expect_last_seq=1)
    assert [m.seq for m in store.read("s")] == [1, 2]
    with pytest.raises(InvalidInput):
        store.append("s", Message.user("c"), expect_last_seq=-1)


def test_read_paging(store: Any) -> None:
    store.append("s", [Message.user(str(i)) for i in range(1, 11)])
    assert [m.seq for m in store.read("s", after_seq=7)] == [8, 9, 10]
    assert [m.seq for m in store.read("s", limit=3)] == [1, 2, 3]
    assert [m.seq for m in store.read("s", limit=3, newest=True)] == [8, 9, 10]
    assert [m.seq for m in store.read("s", after_seq=2, limit=2)] == [3, 4]
    assert store.last("s").seq == 10  # type: ignore[union-attr]
    assert store.read("missing") == [] and store.last("missing") is None
    with pytest.raises(InvalidInput):
        store.read("s", limit=0)


def test_pop(store: Any) -> None:
    store.append("s", [Message.user("a"), Message.assistant("b")], idempotency_key="k")
    popped = store.pop("s")
    assert popped.text == "b" and popped.seq == 2
    assert [m.seq for m in store.read("s")] == [1]
    nxt = store.append("s", Message.assistant("c"))
    assert nxt.first_seq == 2  # gapless after pop
    assert store.info("s").total_tokens == sum(m.tokens for m in store.read("s"))
    assert store.pop("missing") is None
    # the popped batch's idempotency key no longer replays a message that is gone
    assert not store.append("s", Message.user("d"), idempotency_key="k").replayed


def test_tokens_are_counted_once_at_write(store: Any) -> None:
    r = store.append("s", Message.user("hello world, this is a test"))
    assert r.messages[0].tokens == store.count_tokens(Message.user("hello world, this is a test"))
    assert store.info("s").total_tokens == r.messages[0].tokens


def test_one_message_appends_match_one_batch(store: Any) -> None:
    """The one-message append (its own short path on SQLite and PostgreSQL) keeps the same
    session counters, running token totals, latest-user seq and returned messages as a batch."""
    msgs = [
        Message.system("You are terse."),
        Message.user("hello there, how are you today?"),
        Message.assistant("fine, thanks for asking. what do you need?"),
        Message.user("tell me about the weather in Oslo"),
        Message.assistant("it rains a lot; take an umbrella and a warm coat with you"),
        Message.assistant("anything else?"),
    ]
    returned = [store.append("one", m).messages[0] for m in msgs]
    store.append("many", msgs)
    a, b = store.info("one"), store.info("many")
    assert (a.message_count, a.last_seq, a.total_tokens) == (
        b.message_count,
        b.last_seq,
        b.total_tokens,
    )
    assert a.total_tokens == sum(m.tokens for m in store.read("one"))
    assert returned == store.read("one")
    for budget in (1, 10, 20, 30, 45, 60, 1000):
        wa, wb = store.window("one", budget), store.window("many", budget)
        assert [(m.seq, m.tokens) for m in wa.messages] == [(m.seq, m.tokens) for m in wb.messages]
        assert [m.seq for m in wa.system] == [m.seq for m in wb.system]
    # a stale expect_last_seq on a one-message append stores nothing
    with pytest.raises(ConflictError) as err:
        store.append("one", Message.user("late"), expect_last_seq=5)
    assert (err.value.expected, err.value.actual) == (5, 6)
    assert store.info("one").last_seq == 6
    done = store.append("one", Message.user("now"), expect_last_seq=6).messages[0]
    assert done.seq == 7 and store.read("one", after_seq=6) == [done]
