"""The backends the crash and soak runs use, each on storage of its own.

A target is a store URL on fresh storage (a new SQLite file, folder, PostgreSQL schema, Redis
key prefix) plus what a checker needs to look underneath (the SQLite file, the folder) or to
kill (a private ``redis-server`` with AOF). The shared PostgreSQL and Redis servers are only
ever written to under a fresh schema or prefix, which is dropped afterwards; they are never
stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: killed writers run on each of these (``redis-aof``: a private server with ``appendfsync
#: always``, where every other kill takes the server down too)
KILL_TARGETS = (
    "sqlite-full",
    "sqlite-normal",
    "sqlite-extra",
    "sqlite-off",
    "file",
    "postgres",
    "redis",
    "redis-aof",
    "redis-cluster",
)
#: the concurrency soak runs on each of these (8 processes sharing one store)
SOAK_TARGETS = ("sqlite", "file", "postgres", "redis", "redis-cluster")


@dataclass
class Target:
    name: str
    url: str
    sqlite_path: Path | None = None
    file_dir: Path | None = None
    server: Any = None  # a private redis-server the crash run may SIGKILL and restart


@contextmanager
def open_target(name: str, folder: Path, *, cluster_url: str | None = None) -> Iterator[Target]:
    """A fresh ``name`` target in ``folder``; its schema or key prefix is dropped afterwards.

    ``redis-cluster`` uses ``cluster_url`` (the test session's cluster) or starts a 3-node
    cluster of its own for the duration."""
    folder.mkdir(parents=True, exist_ok=True)
    if name.startswith("sqlite"):
        level = name.partition("-")[2] or "full"
        path = folder / "chatkeep.db"
        yield Target(name, f"sqlite:///{path}?synchronous={level}", sqlite_path=path)
    elif name == "file":
        yield Target(name, f"file://{folder / 'files'}", file_dir=folder / "files")
    elif name == "postgres":
        from pg_support import fresh_postgres_url

        with fresh_postgres_url() as url:
            yield Target(name, url)
    elif name == "redis":
        from redis_support import fresh_prefix, server_url

        with fresh_prefix(server_url()) as (url, _):
            yield Target(name, url)
    elif name == "redis-aof":
        with _private_redis(folder) as server:
            options = "?durability_warning=off&timeout=2&connect_timeout=1"
            yield Target(name, server.url + options, server=server)
    elif name == "redis-cluster":
        from redis_support import LocalCluster, fresh_cluster_prefix

        cluster = None
        if cluster_url is None:
            cluster = LocalCluster(folder / "cluster")
            (folder / "cluster").mkdir()
            cluster.start()
            cluster_url = cluster.url
        try:
            with fresh_cluster_prefix(cluster_url) as url:
                yield Target(name, url)
        finally:
            if cluster is not None:
                cluster.stop()
    else:
        raise ValueError(f"unknown target {name!r}")


@contextmanager
def _private_redis(folder: Path) -> Iterator[Any]:
    # The private AOF server of the Redis backend's own tests (moving to
    # tests/reliability/servers.py as RedisServer; this name keeps working either way).
    from redis_support import server_url
    from test_redis_backend import Server

    server_url()  # skips (fails under CI=true) like every Redis test when Redis is off
    server = Server(folder)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()
