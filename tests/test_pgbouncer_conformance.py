"""The whole conformance suite (tests/conformance), sync and async, run again on PostgreSQL
through a private PgBouncer in transaction pooling mode (``?pgbouncer=true``).

Every test gets a fresh schema, so every test also migrates a new schema through the bouncer.
The bouncer has a small server pool (4) while each store's pool may open 10 connections, so
consecutive statements of one store routinely land on different server connections: anything
relying on session state (prepared statements, SET, session advisory locks) would show here.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from conformance import (
    test_append,
    test_isolation,
    test_leases_and_lifecycle,
    test_replace,
    test_returned_copies,
    test_sessions,
    test_window,
)
from pgbouncer_support import PgBouncer, bouncer, fresh_bouncer_url

MODULES: tuple[ModuleType, ...] = (
    test_append,
    test_isolation,
    test_leases_and_lifecycle,
    test_replace,
    test_returned_copies,
    test_sessions,
    test_window,
)
for _module in MODULES:  # the conformance tests themselves, unchanged
    for _name, _test in vars(_module).items():
        if _name.startswith("test_") and callable(_test):
            globals()[_name] = _test


@pytest.fixture(scope="module")
def transaction_bouncer() -> Iterator[PgBouncer]:
    with bouncer("transaction") as b:
        yield b


@pytest.fixture
def backend() -> str:
    return "postgres-pgbouncer"


@pytest.fixture
def url(transaction_bouncer: PgBouncer) -> Iterator[str]:
    with fresh_bouncer_url(transaction_bouncer) as bouncer_url:
        yield bouncer_url


def test_the_suite_really_runs_through_the_bouncer(
    url: str, transaction_bouncer: PgBouncer
) -> None:
    """Guards the module: its stores connect to the bouncer's port with the option on."""
    import chatkeep

    assert f":{transaction_bouncer.port}/" in url and "pgbouncer=true" in url
    with chatkeep.open_store(url) as store:
        backend = store._backend
        assert backend.options.pgbouncer and backend.options.prepare_threshold == 0
        for i in range(12):  # past psycopg's default prepare threshold
            store.append("s", {"role": "user", "content": f"m{i}"})
        assert [m.seq for m in store.read("s")] == list(range(1, 13))
    log = transaction_bouncer.log.read_text(errors="replace")
    assert "new connection to server" in log or "login attempt" in log
