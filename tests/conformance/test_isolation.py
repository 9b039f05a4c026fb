"""Conformance: tenants, retention and erase."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from chatkeep import Message
from chatkeep.types import utcnow


def test_tenants_never_see_each_other(store: Any) -> None:
    acme = store.with_tenant("acme")
    globex = store.with_tenant("globex")
    acme.append("shared-id", Message.user("acme secret"))
    globex.append("shared-id", Message.user("globex secret"))
    assert [m.text for m in acme.read("shared-id")] == ["acme secret"]
    assert [m.text for m in globex.read("shared-id")] == ["globex secret"]
    assert store.read("shared-id") == [] and store.info("shared-id") is None
    assert [s.tenant for s in acme.sessions().items] == ["acme"]
    assert globex.window("shared-id", 100).messages[0].text == "globex secret"
    assert acme.delete("shared-id") and globex.info("shared-id") is not None


def test_erase_removes_one_tenant(store: Any) -> None:
    acme = store.with_tenant("acme")
    for i in range(5):
        acme.append(f"s{i}", Message.user("x"))
    store.append("mine", Message.user("keep"))
    assert store.erase("acme") == 5
    assert acme.sessions().items == ()
    assert store.read("mine")[0].text == "keep"


def test_expired_sessions_are_gone_and_purged(store: Any) -> None:
    store.append("old", Message.user("bye"))
    store.append("live", Message.user("hi"))
    store.update_session("old", expires_at=utcnow() - timedelta(seconds=1))
    store.update_session("live", expires_at=utcnow() + timedelta(hours=1))
    assert store.read("old") == [] and store.info("old") is None
    assert [s.session_id for s in store.sessions().items] == ["live"]
    assert store.purge_expired() == 1
    assert store.purge_expired() == 0
    # a new append to an expired id starts a brand-new session
    assert store.append("old", Message.user("new")).first_seq == 1
    # clearing the expiry keeps the session forever
    assert store.update_session("live", expires_at=None).expires_at is None


def test_appends_purge_expired_sessions(open_any: Any) -> None:
    store = open_any(purge_interval=0)  # purge on every append (default: once a minute)
    store.append("old", Message.user("bye"))
    store.update_session("old", expires_at=utcnow() - timedelta(seconds=1))
    store.append("other", Message.user("hi"))  # this append purges "old" for real
    assert store.purge_expired() == 0


def test_purge_removes_the_leases_of_purged_sessions(store: Any) -> None:
    store.append("old", Message.user("bye"))
    assert store.acquire_lease("old", owner="crashed-worker", ttl=3600) is not None
    store.update_session("old", expires_at=utcnow() - timedelta(seconds=1))
    assert store.purge_expired() == 1
    assert store.acquire_lease("old", owner="new-worker", ttl=5) is not None
