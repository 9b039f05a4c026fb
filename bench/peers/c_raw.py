"""Raw drivers: the least an app could do with no library, the physical baseline.

Each message is one row ``(session, seq, role, body)`` keyed by ``(session, seq)`` (body: the
message as JSON), or one Redis list entry. The connection is opened once per process; the seq
comes from a counter the process keeps (a floor: it is only right for one writer). The window
is an indexed ``ORDER BY seq DESC LIMIT k`` plus ``json.loads`` of each body, ``k`` = the
number of messages chatkeep's 3,000-token window returned.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from bench.peers.contenders import (
    PG_URL,
    REDIS_URL,
    Contender,
    pg_drop,
    pg_durability,
    redis_cleanup,
    redis_durability,
    sqlite_pragmas,
)


def _body(role: str, text: str) -> str:
    return json.dumps({"role": role, "content": text})


class _RawSqlite(Contender):
    family, backend = "raw", "sqlite"
    sync = "FULL"
    max_history = 100_000
    note = "stdlib sqlite3, WAL, BEGIN; INSERT; COMMIT / ORDER BY seq DESC LIMIT k"

    def open(self) -> None:
        self.conn = sqlite3.connect(self.tmp / f"{self.tag}.db", isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute(f"PRAGMA synchronous = {self.sync}")
        self.conn.execute(
            "CREATE TABLE m (session TEXT NOT NULL, seq INTEGER NOT NULL, role TEXT NOT NULL, "
            "body TEXT NOT NULL, PRIMARY KEY (session, seq)) WITHOUT ROWID"
        )
        self.durability = sqlite_pragmas(self.conn)
        self.seq: dict[str, int] = {}

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        start = self.seq.get(sid, 0)
        self.conn.execute("BEGIN")
        self.conn.executemany(
            "INSERT INTO m VALUES (?, ?, ?, ?)",
            [(sid, start + i + 1, r, _body(r, t)) for i, (r, t) in enumerate(msgs)],
        )
        self.conn.execute("COMMIT")
        self.seq[sid] = start + len(msgs)

    def append(self, sid: str, text: str) -> None:
        seq = self.seq.get(sid, 0) + 1
        self.conn.execute("BEGIN")
        self.conn.execute(
            "INSERT INTO m VALUES (?, ?, ?, ?)", (sid, seq, "user", _body("user", text))
        )
        self.conn.execute("COMMIT")
        self.seq[sid] = seq

    def window(self, sid: str, k: int) -> int:
        rows = self.conn.execute(
            "SELECT seq, role, body FROM m WHERE session = ? ORDER BY seq DESC LIMIT ?", (sid, k)
        ).fetchall()
        return len([json.loads(r[2]) for r in reversed(rows)])

    def close(self) -> None:
        self.conn.close()


class RawSqliteFull(_RawSqlite):
    name, sync = "raw sqlite3 FULL", "FULL"


class RawSqliteNormal(_RawSqlite):
    name, sync = "raw sqlite3 NORMAL", "NORMAL"
    does = ("append",)


class RawSqliteOff(_RawSqlite):
    name, sync = "raw sqlite3 OFF", "OFF"
    does = ("append",)


class RawPsycopg(Contender):
    name, family, backend = "raw psycopg", "raw", "postgres"
    max_history = 100_000
    note = "psycopg 3, one connection, autocommit INSERT / ORDER BY seq DESC LIMIT k"

    def open(self) -> None:
        import psycopg

        self.conn: Any = psycopg.connect(PG_URL, autocommit=True)
        self.conn.execute(
            f'CREATE TABLE "{self.tag}" (session text NOT NULL, seq integer NOT NULL, '
            "role text NOT NULL, body text NOT NULL, PRIMARY KEY (session, seq))"
        )
        self.durability = pg_durability()
        self.seq: dict[str, int] = {}

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        start = self.seq.get(sid, 0)
        with self.conn.transaction(), self.conn.cursor() as cur:
            cur.executemany(
                f'INSERT INTO "{self.tag}" VALUES (%s, %s, %s, %s)',
                [(sid, start + i + 1, r, _body(r, t)) for i, (r, t) in enumerate(msgs)],
            )
        self.seq[sid] = start + len(msgs)

    def append(self, sid: str, text: str) -> None:
        seq = self.seq.get(sid, 0) + 1
        self.conn.execute(
            f'INSERT INTO "{self.tag}" VALUES (%s, %s, %s, %s)',
            (sid, seq, "user", _body("user", text)),
        )
        self.seq[sid] = seq

    def window(self, sid: str, k: int) -> int:
        rows = self.conn.execute(
            f'SELECT seq, role, body FROM "{self.tag}" WHERE session = %s '
            "ORDER BY seq DESC LIMIT %s",
            (sid, k),
        ).fetchall()
        return len([json.loads(r[2]) for r in reversed(rows)])

    def close(self) -> None:
        self.conn.close()
        pg_drop(self.tag)


class RawRedis(Contender):
    name, family, backend = "raw redis", "raw", "redis"
    max_history = 100_000
    note = "redis-py, one client, RPUSH / LRANGE -k -1"

    def open(self) -> None:
        import redis

        self.client = redis.Redis.from_url(REDIS_URL)
        self.durability = redis_durability()

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        self.client.rpush(f"{self.tag}:{sid}", *[_body(r, t) for r, t in msgs])

    def append(self, sid: str, text: str) -> None:
        self.client.rpush(f"{self.tag}:{sid}", _body("user", text))

    def window(self, sid: str, k: int) -> int:
        return len([json.loads(b) for b in self.client.lrange(f"{self.tag}:{sid}", -k, -1)])

    def close(self) -> None:
        self.client.close()
        redis_cleanup(self.tag)


CONTENDERS = [RawSqliteFull, RawSqliteNormal, RawSqliteOff, RawPsycopg, RawRedis]
