"""``/readyz`` reports the store's durability through the public ``AsyncStore.persistent``,
against each kind of store (real PostgreSQL and Redis where available: see
tests/pg_support.py and tests/redis_support.py for when they run or skip)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from chatkeep.server import Settings, create_app


def _ready(client: TestClient) -> dict[str, Any]:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert body["status"] == "ready"
    return body


def test_sqlite_is_persistent(client: TestClient) -> None:
    assert _ready(client)["store"] == {"scheme": "sqlite", "persistent": True}


def test_memory_is_not(make_client: Callable[..., TestClient]) -> None:
    client = make_client(store_url="memory://")
    assert _ready(client)["store"] == {"scheme": "memory", "persistent": False}


def _app(tmp_path: Path, url: str) -> TestClient:
    settings = Settings(store_url=url, keys_file=str(tmp_path / "keys.json"))
    return TestClient(create_app(settings), raise_server_exceptions=False)


def test_postgres_is_persistent(tmp_path: Path) -> None:
    from pg_support import fresh_postgres_url

    with fresh_postgres_url() as url, _app(tmp_path, url) as client:
        assert _ready(client)["store"] == {"scheme": "postgresql", "persistent": True}


def test_redis_reports_what_the_server_says(tmp_path: Path) -> None:
    import redis

    from redis_support import fresh_prefix, server_url

    url = server_url()
    r = redis.Redis.from_url(url, decode_responses=True)
    # ask the server directly: persistent when AOF is on or RDB snapshots are configured
    config = {**r.config_get("appendonly"), **r.config_get("save")}
    r.close()
    expected = config.get("appendonly") == "yes" or bool(config.get("save", "").strip())
    with fresh_prefix(url) as (store_url, _), _app(tmp_path, store_url) as client:
        store = _ready(client)["store"]
    assert store == {"scheme": "redis", "persistent": expected}


@pytest.mark.parametrize("scheme", ["sqlite"])
def test_unreachable_store_still_names_the_scheme(client: TestClient, scheme: str) -> None:
    import chatkeep

    state = client.app.state.chatkeep  # type: ignore[attr-defined]

    async def down(**kw: Any) -> Any:
        raise chatkeep.StoreUnavailable("disk I/O error")

    state.store.sessions = down
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["store"] == {"scheme": scheme}
