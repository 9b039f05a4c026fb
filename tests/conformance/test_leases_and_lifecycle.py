"""Conformance: turn leases, concurrency inside one process, lifecycle."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from chatkeep import InvalidInput, Message, StoreClosed


def test_lease_exclusive_and_fenced(store: Any) -> None:
    a = store.acquire_lease("s", owner="a", ttl=30)
    assert a is not None and a.token >= 1
    assert store.acquire_lease("s", owner="b", ttl=30) is None
    assert store.acquire_lease("other", owner="b", ttl=30) is not None
    assert store.release_lease("s", a.token) is True
    assert store.release_lease("s", a.token) is False
    b = store.acquire_lease("s", owner="b", ttl=30)
    assert b is not None and b.token > a.token
    with pytest.raises(InvalidInput):
        store.acquire_lease("s", owner="c", ttl=0)


def test_lease_expires(store: Any) -> None:
    a = store.acquire_lease("s", owner="a", ttl=0.2)
    assert a is not None
    time.sleep(0.3)
    b = store.acquire_lease("s", owner="b", ttl=30)
    assert b is not None and b.token > a.token
    assert store.release_lease("s", a.token) is False  # a stale holder cannot release b


def test_threads_append_without_loss(store: Any) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                store.append("s", Message.user(f"{n}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    rows = store.read("s")
    assert [m.seq for m in rows] == list(range(1, 101))
    assert sorted(m.text for m in rows) == sorted(f"{n}-{i}" for n in range(4) for i in range(25))


def test_closed_store_says_what_to_do(open_any: Any) -> None:
    store = open_any()
    store.append("s", Message.user("x"))
    store.close()
    with pytest.raises(StoreClosed, match="Open the store once"):
        store.read("s")
    store.close()  # closing twice is harmless


def test_tenant_view_closes_nothing(open_any: Any) -> None:
    store = open_any()
    view = store.with_tenant("t")
    view.close()
    assert store.append("s", Message.user("still open")).first_seq == 1
