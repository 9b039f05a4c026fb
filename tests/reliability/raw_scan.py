"""Read a store's raw storage, bypassing chatkeep: every byte it keeps, as one blob.

- SQLite: the database, ``-wal`` and ``-shm`` files byte for byte (optionally after a
  ``wal_checkpoint(TRUNCATE)``), plus a SQL dump of every table;
- file: every file under the folder;
- PostgreSQL: every row of every table in the store's schema, as text;
- Redis (and Redis Cluster): every key under the store's prefix (SCAN), with its DUMP and its
  value read by type (GET, LRANGE, HGETALL, ZRANGE, SMEMBERS, XRANGE).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit


def sqlite_path(url: str) -> Path:
    return Path(urlsplit(url).path[1:])


def checkpoint(url: str) -> None:
    """Copy the WAL into the database and truncate it (what a quiet SQLite does by itself)."""
    conn = sqlite3.connect(sqlite_path(url))
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert busy == 0, "the checkpoint could not finish (a reader holds a snapshot)"
    finally:
        conn.close()


def _sqlite(url: str) -> bytes:
    path = sqlite_path(url)
    blobs = [p.read_bytes() for p in path.parent.glob(path.name + "*") if p.is_file()]
    conn = sqlite3.connect(path)
    try:
        blobs.append("\n".join(conn.iterdump()).encode())
    finally:
        conn.close()
    return b"\n".join(blobs)


def _files(url: str) -> bytes:
    root = Path(urlsplit(url).path)
    return b"\n".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _postgres(url: str) -> bytes:
    import psycopg
    from psycopg import sql

    base, _, query = url.partition("?")
    schema = dict(parse_qsl(query))["schema"]
    out = []
    with psycopg.connect(base, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (schema,),
            )
        ]
        assert tables, f"no tables in schema {schema}"
        for table in tables:
            q = sql.SQL("SELECT t::text FROM {}.{} t").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            out.extend(f"{table}: {r[0]}" for r in conn.execute(q))
    return "\n".join(out).encode()


def redis_keys(url: str) -> tuple[Any, list[bytes]]:
    import redis
    import redis.cluster

    base, _, query = url.partition("?")
    opts = dict(parse_qsl(query))
    prefix = opts["prefix"]
    if opts.get("cluster") == "on":
        client: Any = redis.cluster.RedisCluster.from_url(base)
    else:
        client = redis.Redis.from_url(base)
    keys = [k for pattern in (f"{{{prefix}:*", f"{prefix}:*") for k in client.scan_iter(pattern)]
    return client, keys


def _redis(url: str) -> bytes:
    client, keys = redis_keys(url)
    out: list[bytes] = []
    try:
        for key in keys:
            kind = client.type(key).decode()
            out.append(key)
            out.append(client.dump(key) or b"")
            if kind == "string":
                out.append(client.get(key) or b"")
            elif kind == "list":
                out.extend(client.lrange(key, 0, -1))
            elif kind == "hash":
                for f, v in client.hgetall(key).items():
                    out.extend((f, v))
            elif kind == "zset":
                out.extend(client.zrange(key, 0, -1))
            elif kind == "set":
                out.extend(client.smembers(key))
            elif kind == "stream":
                for _, fields in client.xrange(key):
                    for f, v in fields.items():
                        out.extend((f, v))
            else:
                raise AssertionError(f"unexpected Redis type {kind} for {key!r}")
    finally:
        client.close()
    return b"\n".join(out)


def raw_bytes(backend: str, url: str, *, checkpointed: bool = True) -> bytes:
    """Every byte the store keeps (see the module doc)."""
    if backend == "sqlite":
        if checkpointed:
            checkpoint(url)
        return _sqlite(url)
    if backend == "file":
        return _files(url)
    if backend == "postgres":
        return _postgres(url)
    if backend in ("redis", "redis-cluster"):
        return _redis(url)
    raise AssertionError(f"no raw storage for {backend}")


def leaks(blob: bytes, *needles: str) -> list[str]:
    """The needles found in ``blob`` (as UTF-8, and JSON-escaped where that differs)."""
    found = []
    for needle in needles:
        forms = {needle.encode(), needle.encode("unicode_escape")}
        if any(f in blob for f in forms):
            found.append(needle)
    return found
