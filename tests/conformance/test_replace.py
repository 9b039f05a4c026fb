"""Conformance: replace, the atomic "make this the whole list" (every backend x sync/async)."""

from __future__ import annotations

import threading
from datetime import timedelta
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
from chatkeep.types import utcnow

OLD = [Message.system("be brief"), Message.user("old question"), Message.assistant("old answer")]


def texts(store: Any, sid: str = "s") -> list[str]:
    return [m.text for m in store.read(sid)]


def new_list(n: int, tag: str) -> list[Message]:
    return [
        Message.user(f"{tag}-{i} " + "word " * i) if i % 2 == 0 else Message.assistant(f"{tag}-{i}")
        for i in range(n)
    ]


def test_replace_restarts_seqs_and_counters(store: Any) -> None:
    store.append("s", OLD)
    store.append("s", Message.user("more"))
    new = new_list(3, "n")
    result = store.replace("s", new)
    assert (result.first_seq, result.last_seq) == (1, 3)
    assert not result.replayed
    back = store.read("s")
    assert [m.seq for m in back] == [1, 2, 3]
    assert [m.message() for m in back] == new
    assert [m.id for m in back] == [m.id for m in result.messages]
    info = store.info("s")
    assert (info.message_count, info.last_seq) == (3, 3)
    assert info.total_tokens == sum(m.tokens for m in back)
    assert info.total_tokens == sum(store.count_tokens(m) for m in new)


def test_replace_creates_a_missing_session(store: Any) -> None:
    result = store.replace("fresh", [Message.user("hi")])
    assert (result.first_seq, result.last_seq) == (1, 1)
    assert texts(store, "fresh") == ["hi"]
    assert [s.session_id for s in store.iter_sessions()] == ["fresh"]


def test_replace_with_nothing_empties_but_keeps_the_session(store: Any) -> None:
    store.append("s", OLD)
    store.update_session("s", metadata={"user": "ada"})
    result = store.replace("s", [])
    assert (result.last_seq, result.messages) == (0, ())
    assert store.read("s") == []
    info = store.info("s")
    assert info is not None and info.message_count == 0 and info.metadata == {"user": "ada"}
    assert store.append("s", Message.user("again")).first_seq == 1


@pytest.mark.parametrize(
    "bad",
    [
        [Message.user("ok"), {"role": "wizard", "content": "x"}],
        [Message.user("ok"), {"role": "tool", "content": "orphan"}],
        [Message.user("ok"), {"role": "user", "content": "lone \ud800 surrogate"}],
        [Message.user("ok"), {"role": "user", "content": 42}],
    ],
)
def test_bad_input_stores_nothing(store: Any, bad: list[Any]) -> None:
    store.append("s", OLD)
    before = store.read("s")
    with pytest.raises(InvalidMessage):
        store.replace("s", bad)
    assert store.read("s") == before
    assert store.info("s").last_seq == 3


def test_bad_arguments_are_rejected(store: Any) -> None:
    store.append("s", OLD)
    with pytest.raises(InvalidSessionId):
        store.replace("", [Message.user("x")])
    with pytest.raises(InvalidInput):
        store.replace("s", [Message.user("x")], expect_last_seq=-1)
    with pytest.raises(InvalidMessage):
        store.replace("s", "plain text")
    assert texts(store) == [m.text for m in OLD]


def test_size_limits_apply_per_message_not_per_batch(open_any: Any) -> None:
    store = open_any(limits=Limits(max_message_bytes=1000, max_batch=3))
    store.append("s", OLD)
    long = new_list(8, "x")  # more than max_batch: a replace writes a whole conversation
    assert store.replace("s", long).last_seq == 8
    assert texts(store) == [m.text for m in long]
    with pytest.raises(InvalidMessage, match="limit is 1000"):
        store.replace("s", [*new_list(5, "y"), Message.user("z" * 2000)])
    assert texts(store) == [m.text for m in long]


def test_expect_last_seq_is_checked_against_the_old_list(store: Any) -> None:
    store.append("s", OLD)
    with pytest.raises(ConflictError) as err:
        store.replace("s", [Message.user("x")], expect_last_seq=2)
    assert (err.value.expected, err.value.actual) == (2, 3)
    assert texts(store) == [m.text for m in OLD]
    store.replace("s", [Message.user("x")], expect_last_seq=3)
    assert texts(store) == ["x"]
    store.replace("other", [Message.user("y")], expect_last_seq=0)
    assert texts(store, "other") == ["y"]


def test_summary_and_idempotency_keys_go_metadata_and_expiry_stay(store: Any) -> None:
    store.append("s", OLD, idempotency_key="k")
    store.put_summary("s", "they talked", 2)
    expires = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    store.update_session("s", metadata={"plan": "pro"}, expires_at=expires)
    store.replace("s", [Message.user("fresh start")])
    assert store.get_summary("s") is None
    info = store.info("s")
    assert info.summary_through_seq == 0
    assert info.metadata == {"plan": "pro"}
    assert info.expires_at == expires
    # the old key's messages are gone, so it must not replay them
    again = store.append("s", Message.user("keyed"), idempotency_key="k")
    assert not again.replayed and again.first_seq == 2
    assert texts(store) == ["fresh start", "keyed"]


def test_replace_on_an_expired_session_starts_a_new_one(store: Any) -> None:
    store.append("s", OLD)
    store.update_session("s", metadata={"old": True}, expires_at=utcnow() - timedelta(seconds=1))
    store.replace("s", [Message.user("reborn")])
    info = store.info("s")
    assert info.metadata == {} and info.expires_at is None
    assert texts(store) == ["reborn"]


def test_pop_and_append_after_replace(store: Any) -> None:
    store.append("s", new_list(6, "old"))
    store.replace("s", new_list(3, "n"))
    popped = store.pop("s")
    assert popped.seq == 3 and popped.text == "n-2 word word "
    assert store.append("s", Message.assistant("next")).first_seq == 3
    assert [m.seq for m in store.read("s")] == [1, 2, 3]
    assert store.info("s").total_tokens == sum(m.tokens for m in store.read("s"))


@pytest.mark.parametrize("budget", [10_000, 60, 25])
def test_window_after_replace_matches_a_fresh_append(store: Any, budget: int) -> None:
    new = [Message.system("rules"), *new_list(9, "w")]
    store.append("r", new_list(12, "old"))
    store.append("r", Message.system("old rules"))
    store.replace("r", new)
    store.append("a", new)
    got, want = store.window("r", budget), store.window("a", budget)
    assert [m.text for m in got.messages] == [m.text for m in want.messages]
    assert [m.seq for m in got.messages] == [m.seq for m in want.messages]
    assert [m.text for m in got.system] == [m.text for m in want.system] == ["rules"]
    assert (got.tokens, got.dropped) == (want.tokens, want.dropped)
    assert store.info("r").total_tokens == store.info("a").total_tokens


def test_replace_is_tenant_scoped(store: Any) -> None:
    other = store.with_tenant("other")
    store.append("s", OLD)
    other.append("s", [Message.user("theirs")])
    store.replace("s", [Message.user("mine")])
    assert texts(store) == ["mine"]
    assert texts(other) == ["theirs"]


def test_readers_never_see_an_empty_or_mixed_list(store: Any) -> None:
    lists = [new_list(3, "a"), new_list(5, "b")]
    wanted = [[m.text for m in lst] for lst in lists]
    store.replace("s", lists[0])
    done = threading.Event()
    seen: list[list[str]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not done.is_set():
                seen.append(texts(store))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            store.replace("s", lists[i % 2])
    finally:
        done.set()
        thread.join(timeout=60)
    assert not errors, errors
    assert seen, "the reader never ran"
    bad = [s for s in seen if s not in wanted]
    assert not bad, f"{len(bad)} of {len(seen)} reads saw neither list, e.g. {bad[0]}"
