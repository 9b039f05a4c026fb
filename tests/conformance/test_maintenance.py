"""Conformance: the maintenance primitives ``chatkeep rekey`` uses (every backend x sync/async):
``rewrite_bodies`` (a message's body changed in place, everything else kept) and
``tenants`` (every tenant that holds a session)."""

from __future__ import annotations

from typing import Any

import pytest

from chatkeep import ConflictError, Message
from chatkeep.stores.base import MAINTENANCE
from chatkeep.validation import encode_body
from conftest import SyncView


def call(store: Any, name: str, *args: Any) -> Any:
    """A backend primitive of ``store``, through its async twin when the store is async."""
    if isinstance(store, SyncView):
        return store._loop.run(getattr(store._store._backend, name)(*args))
    return getattr(store._backend, name)(*args)


def body(text: str) -> bytes:
    return encode_body(Message.user(text))


def snapshot(store: Any, sid: str = "s") -> list[tuple[Any, ...]]:
    return [(m.seq, m.id, m.role, m.tokens, m.created_at) for m in store.read(sid)]


def test_rewrite_bodies_keeps_seq_id_time_and_idempotency(store: Any) -> None:
    first = store.append("s", [Message.user("one"), Message.user("two")], idempotency_key="k")
    store.append("s", Message.user("three"))
    store.update_session("s", metadata={"t": 1})
    before, info = snapshot(store), store.info("s")
    ids = [m.id for m in store.read("s")]
    call(
        store,
        "rewrite_bodies",
        store.tenant,
        "s",
        [(1, ids[0], body("ONE")), (3, ids[2], body("3"))],
    )
    assert [m.content for m in store.read("s")] == ["ONE", "two", "3"]
    assert snapshot(store) == before  # seq, id, role, tokens, time: all kept
    assert [m.content for m in store.window("s", 10_000).messages] == ["ONE", "two", "3"]
    store.put_summary("s", "a summary", 2)
    replay = store.append("s", [Message.user("one"), Message.user("two")], idempotency_key="k")
    assert replay.replayed and [m.id for m in replay.messages] == [m.id for m in first.messages]
    assert [m.content for m in replay.messages] == ["ONE", "two"]
    assert len(store.read("s")) == 3  # replayed, not appended again
    assert store.get_summary("s").text == "a summary"
    call(store, "rewrite_bodies", store.tenant, "s", [(2, ids[1], body("TWO"))])
    assert store.get_summary("s").text == "a summary"  # a rewrite keeps the summary
    after = store.info("s")
    assert (after.metadata, after.last_seq, after.total_tokens) == (
        info.metadata,
        info.last_seq,
        info.total_tokens,
    )
    assert store.with_tenant("other").read("s") == []


def test_rewrite_bodies_is_all_or_nothing_and_checks_ids(store: Any) -> None:
    store.append("s", [Message.user("one"), Message.user("two"), Message.user("three")])
    ids = [m.id for m in store.read("s")]
    t = store.tenant
    bad_batches = [
        [(1, ids[0], body("X")), (2, "not-its-id", body("Y"))],  # a wrong id
        [(1, ids[0], body("X")), (9, ids[1], body("Y"))],  # no such seq
        [(2, ids[2], body("X"))],  # another message's id
    ]
    for rows in bad_batches:
        with pytest.raises(ConflictError):
            call(store, "rewrite_bodies", t, "s", rows)
        assert [m.content for m in store.read("s")] == ["one", "two", "three"]
    with pytest.raises(ConflictError):  # another tenant's session of the same id
        call(store, "rewrite_bodies", "other", "s", [(1, ids[0], body("X"))])
    with pytest.raises(ConflictError):  # a session that does not exist
        call(store, "rewrite_bodies", t, "nope", [(1, ids[0], body("X"))])
    store.pop("s")
    with pytest.raises(ConflictError):  # popped meanwhile
        call(store, "rewrite_bodies", t, "s", [(3, ids[2], body("X"))])
    store.append("s", Message.user("three again"))  # seq 3 again, another id
    with pytest.raises(ConflictError):
        call(store, "rewrite_bodies", t, "s", [(3, ids[2], body("X"))])
    store.replace("s", [Message.user("r1")])  # seq 1 again, another id
    with pytest.raises(ConflictError):
        call(store, "rewrite_bodies", t, "s", [(1, ids[0], body("X"))])
    assert [m.content for m in store.read("s")] == ["r1"]
    call(store, "rewrite_bodies", t, "s", [])  # nothing to do is fine


def test_tenants_lists_every_tenant_holding_a_session(store: Any) -> None:
    assert call(store, "tenants") == []
    names = ["default", "acme", "b:c d", "Ünï"]
    for name in names:
        store.with_tenant(name).append("s", Message.user(f"hello {name}"))
    store.with_tenant("acme").update_session("meta-only", metadata={"a": 1})
    assert call(store, "tenants") == sorted(names)
    store.erase("acme")
    assert call(store, "tenants") == sorted(set(names) - {"acme"})


def test_every_backend_has_the_maintenance_primitives() -> None:
    from chatkeep.stores.base import AsyncBackend, Backend
    from chatkeep.stores.file import FileBackend
    from chatkeep.stores.memory import MemoryBackend
    from chatkeep.stores.postgres import PostgresBackend
    from chatkeep.stores.postgres_async import AsyncPostgresBackend
    from chatkeep.stores.redis import RedisBackend
    from chatkeep.stores.redis_async import AsyncRedisBackend
    from chatkeep.stores.sqlite import SQLiteBackend
    from chatkeep.stores.threaded import ThreadedAsyncBackend

    for proto in (Backend, AsyncBackend):
        assert set(MAINTENANCE) <= set(vars(proto))
    for cls in (MemoryBackend, SQLiteBackend, FileBackend, PostgresBackend, RedisBackend):
        for name in MAINTENANCE:
            assert callable(getattr(cls, name)), (cls, name)
    for cls in (ThreadedAsyncBackend, AsyncPostgresBackend, AsyncRedisBackend):
        for name in MAINTENANCE:
            assert callable(getattr(cls, name)), (cls, name)
