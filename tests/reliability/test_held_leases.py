"""Leases an outage left held (tests/reliability/test_db_restarts.py cuts real turns on real
servers); here each case of chatkeep.held_leases on every backend x {sync, async},
deterministically: the outage's effect is recorded the way the store records it when a call
raises StoreUnavailable."""

from __future__ import annotations

import time

from chatkeep import Store
from chatkeep.held_leases import HeldLeases


def held(store: Store) -> HeldLeases:
    return store._root._held  # what the store fills when a lease call raises StoreUnavailable


def test_a_release_that_failed_is_done_on_the_next_acquire(store: Store) -> None:
    lease = store.acquire_lease("s", owner="a", ttl=60)
    assert lease is not None
    held(store).release_failed(store.tenant, "s", lease.token)  # as if the release raised
    assert store.acquire_lease("t", owner="b", ttl=60) is not None  # any acquire settles it
    assert len(held(store)) == 0
    assert store.acquire_lease("s", owner="b", ttl=60) is not None  # "s" is free again


def test_an_acquire_granted_with_its_reply_lost_is_released(store: Store) -> None:
    assert store.acquire_lease("s", owner="lost", ttl=60) is not None  # granted...
    held(store).acquire_failed(store.tenant, "s", "lost")  # ...but the caller saw an error
    assert store.acquire_lease("s", owner="b", ttl=60) is None  # held; this call settles it
    assert store.acquire_lease("s", owner="b", ttl=60) is not None


def test_a_late_release_never_frees_someone_elses_lease(store: Store) -> None:
    old = store.acquire_lease("s", owner="a", ttl=0.05)
    assert old is not None
    time.sleep(0.1)  # a's lease expired; b takes the session
    assert store.acquire_lease("s", owner="b", ttl=60) is not None
    held(store).release_failed(store.tenant, "s", old.token)
    held(store).acquire_failed(store.tenant, "s", "never-granted")
    assert store.acquire_lease("t", owner="c", ttl=60) is not None  # settles both
    assert len(held(store)) == 0
    assert store.acquire_lease("s", owner="d", ttl=60) is None  # b still holds "s"
