"""Every contender of the append and window workloads, behind one small interface.

A contender is one way an app stores a conversation: a peer library's chat store or history
class, chatkeep (its ``Memory`` and its framework adapters), or a raw driver doing the least an
app could do with no library (the physical baseline). Each contender:

* ``open()``: what a process creates once and keeps (an engine, a pool, a client, a store),
  as the framework's docs show; it also reads back the durability actually in force;
* ``fill(sid, msgs)``: stores a history fast, through the framework's own bulk call where it
  has one, so the rows are exactly what its API writes;
* ``append(sid, text)``: one ~75-token user message, with a fresh memory/history object per
  request as a web handler does;
* ``window(sid, k)``: the 3,000-token window the LLM gets, the way the framework's users get
  it, again from a fresh object; returns how many messages it produced;
* ``close()``: drops its tables and keys (the databases are shared).

The families live in ``c_raw``, ``c_chatkeep``, ``c_llamaindex``, ``c_langchain`` and
``c_agents``; ``build()`` returns them all, in a stable order.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.run import chat_text

TOKEN_LIMIT = 3000
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
REDIS_URL = "redis://127.0.0.1:6379/0"
RUN_ID = uuid.uuid4().hex[:8]  # unique table names / key prefixes on the shared servers


class Deadline(Exception):
    """An operation ran past its deadline (reported as a ``timeout`` row)."""


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only) by raising ``Deadline``."""

    def fire(signum: int, frame: Any) -> None:
        raise Deadline(f"> {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def history(n: int, start: int = 0, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` (role, text) pairs, user and assistant alternating, ~75 tokens each; the same
    for every contender (deterministic by position)."""
    out = []
    for i in range(start, start + n):
        rng = random.Random(seed * 1_000_003 + i)
        out.append(("user" if i % 2 == 0 else "assistant", chat_text(rng)))
    return out


def sqlite_pragmas(conn: Any) -> str:
    """``journal_mode`` and ``synchronous`` as a connection really has them."""
    levels = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    if isinstance(conn, sqlite3.Connection):
        jm = conn.execute("PRAGMA journal_mode").fetchone()[0]
        sync = conn.execute("PRAGMA synchronous").fetchone()[0]
    else:  # an SQLAlchemy connection
        from sqlalchemy import text

        jm = conn.execute(text("PRAGMA journal_mode")).scalar()
        sync = conn.execute(text("PRAGMA synchronous")).scalar()
    return f"sqlite journal={str(jm).upper()} synchronous={levels.get(int(sync), sync)}"


def pg_durability() -> str:
    import psycopg

    with psycopg.connect(PG_URL) as conn:
        sc = conn.execute("SHOW synchronous_commit").fetchone()
        fs = conn.execute("SHOW fsync").fetchone()
    return f"postgres synchronous_commit={sc[0] if sc else '?'} fsync={fs[0] if fs else '?'}"


def redis_durability() -> str:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        aof = client.config_get("appendonly").get("appendonly", "?")
        fsync = client.config_get("appendfsync").get("appendfsync", "?")
        save = client.config_get("save").get("save", "?")
    finally:
        client.close()
    return f"redis appendonly={aof} appendfsync={fsync} save='{save}'"


def redis_cleanup(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


def pg_drop(*tables: str) -> None:
    import psycopg

    with psycopg.connect(PG_URL, autocommit=True) as conn:
        for t in tables:
            conn.execute(f'DROP TABLE IF EXISTS "{t}" CASCADE')


class Contender:
    name = ""
    family = ""  # chatkeep, llamaindex, langchain, agents, raw
    backend = ""  # sqlite, postgres, redis, file
    durability = ""
    max_history = 10_000  # the largest size tried (chatkeep and raw: 100,000)
    does: tuple[str, ...] = ("append", "window")
    note = ""  # how it is called, shown in the report

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.tag = f"pb{RUN_ID}{type(self).__name__.lower()}"

    def open(self) -> None:
        pass

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def append(self, sid: str, text: str) -> None:
        raise NotImplementedError

    def window(self, sid: str, k: int) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass


def build(tmp: Path, *workloads: str) -> list[Contender]:
    """Every contender that takes part in any of ``workloads``, opened by the engine."""
    from bench.peers import c_agents, c_chatkeep, c_langchain, c_llamaindex, c_raw

    out: list[Contender] = []
    for module in (c_chatkeep, c_raw, c_llamaindex, c_langchain, c_agents):
        for cls in module.CONTENDERS:
            if any(w in cls.does for w in workloads):
                out.append(cls(tmp))
    return out
