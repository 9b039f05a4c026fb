"""Whole-store snapshots for hostile-input tests: "nothing else changed" is checked on what the
API returns (every seeded tenant and session) and, where a backend has one, on its raw storage
(SQLite dump, PostgreSQL rows, Redis keys, the file backend's bytes)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from chatkeep.errors import InvalidInput

#: tenants every hostile test seeds and snapshots (hostile names included on purpose)
TENANTS = ("default", "acme", "'; DROP TABLE ck_sessions; --", "{tag}*?[x]", "../../etc")
SEED_IDS = ("plain", "user:42/thread:7", "{tag}", "*", "a?b[c]", "../../etc/passwd", "%2F")


def seed(store: Any) -> None:
    """A few sessions in every tenant, with a summary and metadata, to prove untouched."""
    from chatkeep import Message

    for t, tenant in enumerate(TENANTS):
        view = store.with_tenant(tenant)
        for i, sid in enumerate(SEED_IDS[: 2 + t]):
            view.append(
                sid,
                [
                    Message.system("be brief"),
                    Message.user(f"{tenant}/{sid} secret {i}", metadata={"n": i, "t": tenant}),
                    Message.assistant("ok", tool_calls=[_call("c1")]),
                    Message.tool("42", tool_call_id="c1"),
                ],
            )
            view.put_summary(sid, f"summary of {tenant}/{sid}", 2)
            view.update_session(sid, metadata={"owner": tenant, "i": i})


def _call(call_id: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}


def logical(store: Any, tenants: tuple[str, ...] = TENANTS) -> dict[str, Any]:
    """Every session of every tenant: info, all messages, summary."""
    out: dict[str, Any] = {}
    for tenant in tenants:
        view = store.with_tenant(tenant)
        sessions: dict[str, Any] = {}
        for info in view.iter_sessions():
            sid = info.session_id
            summary = view.get_summary(sid)
            sessions[sid] = {
                "info": info.to_dict(),
                "messages": [m.to_dict() for m in view.read(sid)],
                "summary": None if summary is None else (summary.text, summary.covers_through_seq),
            }
        out[tenant] = sessions
    return out


def raw(url: str) -> Any:
    """The backend's raw storage, as comparable data (None for memory://)."""
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "sqlite":
        with sqlite3.connect(parts.path) as conn:
            return list(conn.iterdump())
    if parts.scheme == "file":
        root = Path(parts.path)
        return {
            str(p.relative_to(root)): p.read_bytes()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not p.name.endswith(".lock")
        }
    if parts.scheme.startswith("postgres"):
        return _postgres_rows(url.split("?")[0], options["schema"])
    if parts.scheme == "redis":
        return _redis_keys(url.split("?")[0], options["prefix"])
    return None


def _postgres_rows(base: str, schema: str) -> dict[str, list[Any]]:
    import psycopg
    from psycopg import sql

    rows: dict[str, list[Any]] = {}
    with psycopg.connect(base, connect_timeout=5) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        for (table,) in sorted(tables):
            query = sql.SQL("SELECT * FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            rows[table] = sorted(map(repr, conn.execute(query).fetchall()))
    return rows


def _redis_keys(base: str, prefix: str) -> dict[bytes, Any]:
    import redis

    client = redis.Redis.from_url(base)
    try:
        keys = sorted(
            k for pattern in (f"{{{prefix}:*", f"{prefix}:*") for k in client.scan_iter(pattern)
        )
        # DUMP is the value's exact serialization; TTLs are compared to the second
        return {k: (client.dump(k), client.ttl(k) // 10) for k in keys}
    finally:
        client.close()


class Guard:
    """Snapshots the store once; every refused action must leave it byte-for-byte unchanged."""

    def __init__(self, store: Any, url: str) -> None:
        self.store, self.url = store, url
        self.logical, self.raw = logical(store), raw(url)
        self.refusals: list[str] = []

    def refused(self, action: Any, match: str = "") -> str:
        """``action(store)`` must raise InvalidInput (message containing ``match``) and change
        nothing in the raw storage (or, for memory://, in what the API returns)."""
        try:
            action(self.store)
        except InvalidInput as exc:
            message = str(exc)
        else:
            raise AssertionError(f"accepted: {action}")
        assert message and match in message, message
        if self.raw is None:
            assert logical(self.store) == self.logical
        else:
            assert raw(self.url) == self.raw
        self.refusals.append(message)
        return message

    def unchanged(self) -> None:
        assert logical(self.store) == self.logical
        assert raw(self.url) == self.raw


@contextmanager
def app_client(tmp_path: Path, **settings: Any) -> Iterator[Any]:
    """The server app in-process (lifespan running) on ``tmp_path``'s SQLite store and keys."""
    from fastapi.testclient import TestClient

    from chatkeep.server import Settings, create_app

    settings.setdefault("store_url", f"sqlite:///{tmp_path}/server.db")
    settings.setdefault("keys_file", str(tmp_path / "keys.json"))
    with TestClient(create_app(Settings(**settings)), raise_server_exceptions=False) as client:
        yield client
