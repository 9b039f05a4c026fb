"""Conformance: sessions, info, metadata, summaries, clear/delete."""

from __future__ import annotations

from typing import Any

import pytest

from chatkeep import InvalidInput, InvalidMessage, Message


def test_info_and_metadata(store: Any) -> None:
    assert store.info("s") is None
    store.append("s", [Message.user("a"), Message.assistant("b")])
    info = store.info("s")
    assert (info.session_id, info.tenant, info.message_count, info.last_seq) == (
        "s",
        "default",
        2,
        2,
    )
    assert info.total_tokens == sum(m.tokens for m in store.read("s"))
    assert info.created_at <= info.updated_at
    updated = store.update_session("s", metadata={"user": "ada", "n": [1, 2]})
    assert updated.metadata == {"user": "ada", "n": [1, 2]}
    assert store.info("s").metadata == {"user": "ada", "n": [1, 2]}
    with pytest.raises(InvalidMessage):
        store.update_session("s", metadata={"bad": object()})


def test_sessions_paging_and_prefix(store: Any) -> None:
    ids = [f"user-{i:03d}" for i in range(25)] + ["other-1", "other-2"]
    for sid in ids:
        store.append(sid, Message.user("x"))
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = store.sessions(limit=10, cursor=cursor)
        seen += [s.session_id for s in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == sorted(ids) and pages == 3
    assert [s.session_id for s in store.sessions(prefix="other").items] == ["other-1", "other-2"]
    assert len(list(store.iter_sessions(prefix="user-"))) == 25
    with pytest.raises(InvalidInput):
        store.sessions(cursor="!!not a cursor!!")


def test_clear_keeps_session_delete_removes_it(store: Any) -> None:
    store.append("s", [Message.user("a"), Message.assistant("b")])
    store.put_summary("s", "they said a and b", 2)
    assert store.clear("s") == 2
    assert store.read("s") == [] and store.get_summary("s") is None
    assert store.info("s").message_count == 0
    assert store.append("s", Message.user("again")).first_seq == 1
    assert store.delete("s") is True
    assert store.info("s") is None and store.delete("s") is False
    assert store.sessions().items == ()


def test_summary(store: Any) -> None:
    store.append("s", [Message.user(str(i)) for i in range(5)])
    assert store.get_summary("s") is None
    summ = store.put_summary("s", "numbers 0..2", 3)
    got = store.get_summary("s")
    assert got.text == "numbers 0..2" and got.covers_through_seq == 3 and got.tokens > 0
    assert got == summ
    assert store.info("s").summary_through_seq == 3
    with pytest.raises(InvalidInput):
        store.put_summary("s", "too far", 6)
    with pytest.raises(InvalidInput):
        store.put_summary("nobody", "nothing to cover", 1)
    # popping a summarised message drops the summary (it would describe a message that is gone)
    store.put_summary("s", "all five", 5)
    store.pop("s")
    assert store.get_summary("s") is None


def test_a_summary_counts_as_an_update(store: Any) -> None:
    store.append("s", Message.user("a"))
    before = store.info("s").updated_at
    store.put_summary("s", "a", 1)
    assert store.info("s").updated_at > before
