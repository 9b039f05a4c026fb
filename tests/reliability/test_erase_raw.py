"""Erase and retention delete, not hide: after ``erase(tenant)`` or a retention purge, a scan
of the raw storage (bypassing chatkeep) finds nothing of what was removed, with and without
encryption, on every durable backend. What was not removed is still found (the scan sees data).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

import chatkeep
from chatkeep import Message
from chatkeep.crypto import generate_key
from chatkeep.types import utcnow
from reliability.raw_scan import leaks, raw_bytes

DURABLE = ("sqlite", "file", "postgres", "redis", "redis-cluster")
KEY = generate_key()


@pytest.fixture(params=DURABLE)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["plain", "encrypted"])
def encryption(request: pytest.FixtureRequest) -> str | bool:
    return KEY if request.param == "encrypted" else False


def fill(store: Any, tag: str) -> dict[str, str]:
    """A session with everything a session can hold; returns the strings to look for."""
    t = {k: f"{k}-{tag}" for k in ("sid", "secret", "tool", "summary", "meta", "owner", "idem")}
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": t["tool"]}}
    store.append(
        t["sid"],
        [
            Message.system("rules"),
            Message.user(t["secret"]),
            Message.assistant(None, tool_calls=[call]),
            Message.tool("42", tool_call_id="c1"),
        ],
        idempotency_key=t["idem"],
    )
    store.put_summary(t["sid"], t["summary"], 2)
    store.update_session(t["sid"], metadata={"title": t["meta"]})
    assert store.acquire_lease(t["sid"], owner=t["owner"], ttl=60) is not None
    return t


@pytest.fixture
def opened(url: str, encryption: str | bool) -> Iterator[Any]:
    store = chatkeep.open_store(url, tenant=f"gone-{uuid.uuid4().hex[:8]}", encryption=encryption)
    yield store
    store.close()


def test_erase_leaves_nothing_of_the_tenant(backend: str, url: str, opened: Any) -> None:
    tag = uuid.uuid4().hex[:10]
    gone = fill(opened, f"gone{tag}")
    kept = fill(opened.with_tenant(f"kept-{tag}"), f"kept{tag}")
    before = raw_bytes(backend, url)
    assert leaks(before, gone["sid"]) == [gone["sid"]], "the scan does not see the data"
    if opened._backend.sealer.keyring is None:
        assert leaks(before, gone["secret"], gone["summary"]) == [gone["secret"], gone["summary"]]

    assert opened.erase() == 1

    after = raw_bytes(backend, url, checkpointed=False)  # erase truncated SQLite's WAL itself
    assert leaks(after, opened.tenant, *gone.values()) == []
    assert leaks(after, kept["sid"]) == [kept["sid"]]  # the other tenant is untouched
    assert opened.with_tenant(f"kept-{tag}").info(kept["sid"]) is not None


def test_retention_purge_deletes(backend: str, url: str, opened: Any) -> None:
    tag = uuid.uuid4().hex[:10]
    old = fill(opened, f"old{tag}")
    young = fill(opened, f"young{tag}")
    opened.update_session(old["sid"], expires_at=utcnow() - timedelta(seconds=1))
    opened.update_session(young["sid"], expires_at=utcnow() + timedelta(hours=1))
    opened.purge_expired()
    assert opened.info(old["sid"]) is None
    after = raw_bytes(backend, url, checkpointed=False)
    assert leaks(after, *old.values()) == []
    assert leaks(after, young["sid"]) == [young["sid"]]


def test_sqlite_scan_would_see_deleted_rows_without_secure_delete(tmp_path: Any) -> None:
    """The scan is sensitive: with SQLite's secure_delete off (the default of many builds),
    erased text stays in free pages, which is why the backend turns it on."""
    url = f"sqlite:///{tmp_path}/insecure.db"
    with chatkeep.open_store(url, tenant="t", encryption=False) as store:
        store._backend._conn.execute("PRAGMA secure_delete = OFF")
        t = fill(store, "x" * 12)
        store.append(t["sid"], Message.user("y" * 3000))  # enough rows to fill whole pages
        store.erase()
    assert leaks(raw_bytes("sqlite", url), t["secret"]) == [t["secret"]]
