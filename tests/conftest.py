"""Shared fixtures: every backend x {sync, async}, each test on fresh storage."""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import chatkeep
from chatkeep import AsyncStore, Store
from redis_support import redis_cluster_url  # noqa: F401  (a session fixture)

BACKENDS = ("memory", "sqlite", "file", "postgres", "redis", "redis-cluster")


def backend_url(kind: str, tmp_path: Path) -> str:
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/chatkeep.db"
    if kind == "file":
        return f"file://{tmp_path}/files"
    raise AssertionError(kind)


class LoopThread:
    """An event loop on its own thread, so sync-style tests can drive the async twin."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=120)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class SyncView:
    """Presents an AsyncStore with the sync Store's call shape; every call really runs the
    async code path on a live event loop."""

    def __init__(self, store: AsyncStore, loop: LoopThread) -> None:
        self._store = store
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name == "with_tenant":
            return lambda tenant: SyncView(attr(tenant), self._loop)
        if inspect.iscoroutinefunction(attr):
            return lambda *a, **kw: self._loop.run(attr(*a, **kw))
        return attr

    def iter_sessions(self, **kw: Any) -> Iterator[chatkeep.SessionInfo]:
        async def collect() -> list[chatkeep.SessionInfo]:
            return [s async for s in self._store.iter_sessions(**kw)]

        return iter(self._loop.run(collect()))


@pytest.fixture(autouse=True)
def _keep_main_module() -> Iterator[None]:
    # Streamlit's AppTest leaves the app script installed as ``__main__``; a child process
    # started with "spawn" afterwards would run that script again before its own target.
    main = sys.modules["__main__"]
    yield
    sys.modules["__main__"] = main


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    if backend == "redis":  # a real server, a fresh key prefix per test (tests/redis_support.py)
        from redis_support import fresh_prefix, server_url

        with fresh_prefix(server_url()) as (redis_url, _):
            yield redis_url
        return
    if backend == "redis-cluster":  # a real 3-node Redis Cluster (tests/redis_support.py)
        from redis_support import fresh_cluster_prefix

        with fresh_cluster_prefix(request.getfixturevalue("redis_cluster_url")) as cluster_url:
            yield cluster_url
        return
    if backend == "postgres":  # a fresh schema per test, dropped afterwards
        from pg_support import fresh_postgres_url

        with fresh_postgres_url() as pg_url:
            yield pg_url
        return
    yield backend_url(backend, tmp_path)


@pytest.fixture(params=["sync", "async"])
def flavour(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_options() -> dict[str, Any]:
    """Extra open_store options for every store a test opens (a module may override it, e.g.
    to run conformance tests with encryption on)."""
    return {}


@pytest.fixture
def open_any(url: str, flavour: str, store_options: dict[str, Any]) -> Iterator[Callable[..., Any]]:
    """Opens stores on this test's backend URL in this test's flavour; closes them after."""
    opened: list[Any] = []
    loop = LoopThread() if flavour == "async" else None

    def make(**kw: Any) -> Any:
        kw = {**store_options, **kw}
        if loop is None:
            store: Any = chatkeep.open_store(url, **kw)
        else:
            store = SyncView(loop.run(chatkeep.open_async_store(url, **kw)), loop)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
    if loop is not None:
        loop.stop()


@pytest.fixture
def store(open_any: Callable[..., Any]) -> Store:
    """A fresh store: every backend x {sync, async}."""
    s: Store = open_any()
    return s
