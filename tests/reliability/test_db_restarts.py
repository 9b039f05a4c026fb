"""PostgreSQL and Redis restarted under load (fast/graceful and immediate/SIGKILL), on private
servers: calls fail with StoreUnavailable (HTTP 503 + Retry-After) within their timeouts, the
same store (or server process) recovers by itself, and no acknowledged write is lost or stored
twice. The engine is tests/reliability/faults_lib.py; ``make soak`` runs it for longer."""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.reliability.faults_lib import run_fault_cycles, store_url
from tests.reliability.servers import PostgresServer, RedisServer, need

import chatkeep
from chatkeep import AsyncMemory, Memory, StoreUnavailable

pytestmark = pytest.mark.slow

# Every call is bounded by the store URL's timeouts (pool_timeout/timeout 2 s, connect 1 s).
FAILURE_BOUND_S = 8.0
RECOVERY_BOUND_S = 10.0


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Any]]:
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # reconnect noise, by design
    pg = need(PostgresServer)
    with tempfile.TemporaryDirectory(prefix="chatkeep-redis-") as folder:
        rs = need(RedisServer, Path(folder))
        try:
            pg.start()
            rs.start()
            yield {"postgres": pg, "redis": rs}
        finally:
            rs.close()
            pg.close()


def assert_survived(r: dict[str, Any], cycles: int) -> None:
    assert r["errors"] == []
    assert r["restarts"] == cycles
    assert r["acked"] > 0 and r["stored"] == r["acked"]
    assert r["lost"] == r["duplicated"] == r["wrong_seq"] == r["gaps"] == r["torn"] == 0, r
    assert r["pending"] == 0  # every write was acknowledged in the end
    assert r["unavailable"] > 0, "the writers never saw the outage"
    assert r["failure_seconds_max"] < FAILURE_BOUND_S, r
    assert r["recovery_max_s"] < RECOVERY_BOUND_S, r


@pytest.mark.parametrize("api", ["sync", "async"])
@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_the_same_store_recovers_and_loses_nothing(
    servers: dict[str, Any], kind: str, api: str
) -> None:
    r = run_fault_cycles(kind, 2, api=api, server=servers[kind], warm=0.3, down=0.8)
    assert r["modes"] == list(servers[kind].MODES)  # fast + immediate; shutdown + SIGKILL
    assert_survived(r, 2)


@pytest.mark.parametrize("via", ["http", "chat"])
@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_the_server_answers_503_with_retry_after_and_recovers(
    servers: dict[str, Any], kind: str, via: str, tmp_path: Path
) -> None:
    # appends: both stop modes; chat turns (lease, window, reply, append): the harsh one
    cycles, modes = (2, None) if via == "http" else (1, servers[kind].MODES[1:])
    r = run_fault_cycles(
        kind, cycles, via=via, modes=modes, server=servers[kind], workdir=tmp_path, warm=0.3,
        down=1.2,
    )  # fmt: skip
    assert_survived(r, cycles)
    assert r["http_503"] == r["unavailable"] > 0  # outages are 503s, never 500s or hangs
    assert r["retry_after_missing"] == 0  # every 503 (API and /readyz) said when to retry
    assert r["readyz_503"] > 0  # /readyz said "not ready" during the outage...
    assert r["ready_recovery_max_s"] < RECOVERY_BOUND_S  # ...and "ready" soon after


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_a_turn_cut_by_an_outage_does_not_block_its_session(
    servers: dict[str, Any], kind: str
) -> None:
    """The turn's append and its lease release both fail while the database is down. The
    store releases that lease once the database is back, so the retried turn runs at once,
    not after the lease's TTL (60 s here; the server's default is 120 s)."""
    server = servers[kind]
    url = store_url(kind, server, f"lease_{uuid.uuid4().hex[:8]}")
    with chatkeep.open_store(url) as store:
        memory = Memory("s", store=store, lease_ttl=60, lease_timeout=20)
        with pytest.raises(StoreUnavailable):
            with memory.turn("hello", idempotency_key="t1") as turn:
                server.stop(server.MODES[0])
                turn.reply("hi")
        server.start()
        started = time.monotonic()
        with memory.turn("hello", idempotency_key="t1") as turn:
            turn.reply("hi")
        assert time.monotonic() - started < 10  # (queued behind the lease: 20 s, then fails)
        assert [m.text for m in store.read("s")] == ["hello", "hi"]

    async def twin() -> float:
        async with await chatkeep.open_async_store(url) as astore:
            amemory = AsyncMemory("a", store=astore, lease_ttl=60, lease_timeout=20)
            with pytest.raises(StoreUnavailable):
                async with amemory.turn("hello") as aturn:
                    server.stop(server.MODES[1])
                    aturn.reply("hi")
            server.start()
            began = time.monotonic()
            async with amemory.turn("hello") as aturn:
                aturn.reply("hi")
            assert [m.text for m in await astore.read("a")] == ["hello", "hi"]
            return time.monotonic() - began

    assert asyncio.run(twin()) < 10


def test_the_openapi_schema_documents_503_with_retry_after_and_507(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from chatkeep.server import Settings, create_app

    settings = Settings(store_url=f"sqlite:///{tmp_path}/s.db", keys_file=str(tmp_path / "k"))
    with TestClient(create_app(settings)) as client:
        paths = client.get("/openapi.json").json()["paths"]
    for path, method in [
        ("/v1/sessions/{session_id}/messages", "post"),
        ("/v1/chat", "post"),
        ("/readyz", "get"),
    ]:
        responses = paths[path][method]["responses"]
        assert "Retry-After" in responses["503"]["headers"], path
    assert "507" in paths["/v1/sessions/{session_id}/messages"]["post"]["responses"]
