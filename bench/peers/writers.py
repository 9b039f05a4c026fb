"""The contenders of the concurrency workload: one class per store with a durable shared store.

Each class is used the way its own users would from a web handler: the long-lived object the
framework's docs say to keep (a store, an engine, a connection) is opened once per process in
``open()``; ``append()`` makes the per-request object (a memory, a history, a session) and
appends one user message through it. ``read()`` returns what a fresh process finds afterwards,
in the store's order, with chatkeep's seq where there is one. ``durability()`` asks the
contender's own connection (PRAGMA / SHOW / CONFIG) instead of assuming. ``cleanup()`` drops
what the runs created (tables, schemas, keys), never anything else on the shared servers.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")


def text(marker: str) -> str:
    """A user message of about 75 tokens (the bench's chat-like text) with a unique ``[marker]``."""
    from bench.run import chat_text

    return f"[{marker}] {chat_text(random.Random(marker))}"


@dataclass(frozen=True)
class Env:
    """Where a run's stores live; ``tag`` makes every table, schema, key and file unique."""

    tmp: str
    pg: str  # postgresql://user@host:port/db
    redis: str  # redis://host:port/db
    tag: str  # lowercase letters, digits, underscores

    def pg_sqlalchemy(self, driver: str) -> str:
        return self.pg.replace("postgresql://", f"postgresql+{driver}://", 1)


def _sqlite_pragmas(conn: Any) -> str:
    mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    level = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
        conn.execute("PRAGMA synchronous").fetchone()[0]
    ]
    return f"sqlite journal={mode} synchronous={level}"


def _sqlalchemy_pragmas(engine: Any) -> str:
    with engine.connect() as conn:
        return _sqlite_pragmas(conn.connection.driver_connection)


def _pg_commit(url: str) -> str:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    return f"postgres synchronous_commit={row[0] if row else '?'}"


def _redis_persistence(url: str) -> str:
    import redis

    client = redis.Redis.from_url(url)
    try:
        aof = client.config_get("appendonly").get("appendonly", "?")
        rdb = client.config_get("save").get("save", "?") or "off"
        return f"redis appendonly={aof} save={rdb!r}"
    except redis.RedisError as exc:
        return f"redis (persistence unknown: {type(exc).__name__})"
    finally:
        client.close()


def _drop_pg(env: Env, *statements: str) -> None:
    import psycopg

    with psycopg.connect(env.pg, autocommit=True) as conn:
        for sql in statements:
            conn.execute(sql)  # type: ignore[arg-type]


def _del_redis(env: Env, pattern: str) -> None:
    import redis

    client = redis.Redis.from_url(env.redis)
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


class Contender:
    name: ClassVar[str]
    family: ClassVar[str]
    backend: ClassVar[str]
    ordered: ClassVar[bool] = False  # chatkeep: gapless seqs are checked too
    # one file per run (else one per contender, its tables made once by the first open)
    file_per_run: ClassVar[bool] = False

    def __init__(self, env: Env, run: int) -> None:
        self.env, self.run = env, run

    def path(self, suffix: str = "db") -> Path:
        slug = "".join(c if c.isalnum() else "-" for c in self.name.lower())
        return Path(self.env.tmp) / f"{slug}{f'-{self.run}' if self.file_per_run else ''}.{suffix}"

    def open(self) -> None: ...

    def append(self, session: str, content: str) -> None:
        raise NotImplementedError

    def read(self, session: str) -> list[tuple[str, int | None]]:
        raise NotImplementedError

    def durability(self) -> str:
        raise NotImplementedError

    def close(self) -> None: ...

    @classmethod
    def cleanup(cls, env: Env) -> None: ...


# ---------------------------------------------------------------- chatkeep


class _Chatkeep(Contender):
    family = "chatkeep"
    ordered = True

    def url(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        import chatkeep

        self.store = chatkeep.open_store(self.url())

    def append(self, session: str, content: str) -> None:
        import chatkeep

        chatkeep.Memory(session, store=self.store).add("user", content)

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [(str(m.content), m.seq) for m in self.store.read(session)]

    def close(self) -> None:
        self.store.close()


class ChatkeepSqlite(_Chatkeep):
    name, backend = "chatkeep sqlite", "sqlite"

    def url(self) -> str:
        return f"sqlite:///{self.path()}"

    def durability(self) -> str:
        return _sqlite_pragmas(self.store._backend._conn)  # type: ignore[attr-defined]


class ChatkeepPostgres(_Chatkeep):
    name, backend = "chatkeep postgres", "postgres"

    def url(self) -> str:
        return f"{self.env.pg}?schema={self.env.tag}_ck"

    def durability(self) -> str:
        return _pg_commit(self.env.pg)

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _drop_pg(env, f"DROP SCHEMA IF EXISTS {env.tag}_ck CASCADE")


class ChatkeepRedis(_Chatkeep):
    name, backend = "chatkeep redis", "redis"

    def url(self) -> str:
        # the shared bench server persists nothing; durability() says so in every row
        return f"{self.env.redis}?prefix={self.env.tag}-ck&durability_warning=off"

    def durability(self) -> str:
        return _redis_persistence(self.env.redis)

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _del_redis(env, f"*{env.tag}-ck*")


class ChatkeepFile(_Chatkeep):
    """``file://``: JSON Lines per session, fsync'd appends under per-session flock locks."""

    name, backend = "chatkeep file", "file"

    def url(self) -> str:
        return f"file://{self.path('d')}"

    def durability(self) -> str:
        return "JSON Lines per session, fsync'd append, flock per session"


# ---------------------------------------------------------------- LlamaIndex


def _li_user(content: str) -> Any:
    from llama_index.core.llms import ChatMessage

    return ChatMessage(role="user", content=content)


class LlamaSimple(Contender):
    """``SimpleChatStore``: load the JSON file, add, ``persist()`` (a rewrite, no fsync, no lock).

    One file for the app (its persist path), so even writers on their own sessions rewrite each
    other's: a load can meet a half-written file (``JSONDecodeError``) and a rewrite from a
    stale copy drops what another process stored in between.
    """

    name, family, backend = "LlamaIndex SimpleChatStore + persist", "llamaindex", "file"
    file_per_run = True  # a file corrupted by one run must not fail the next

    def append(self, session: str, content: str) -> None:
        from llama_index.core.storage.chat_store import SimpleChatStore

        path = self.path("json")
        store = SimpleChatStore.from_persist_path(str(path)) if path.exists() else SimpleChatStore()
        store.add_message(session, _li_user(content))
        store.persist(str(path))

    def read(self, session: str) -> list[tuple[str, int | None]]:
        from llama_index.core.storage.chat_store import SimpleChatStore

        path = self.path("json")
        if not path.exists():
            return []
        store = SimpleChatStore.from_persist_path(str(path))
        return [(str(m.content), None) for m in store.get_messages(session)]

    def durability(self) -> str:
        return "JSON file rewritten by persist(), no fsync, no lock"


class LlamaSqlite(Contender):
    name, family, backend = "LlamaIndex SQLiteChatStore", "llamaindex", "sqlite"

    def open(self) -> None:
        from llama_index.storage.chat_store.sqlite import SQLiteChatStore

        self.store = SQLiteChatStore.from_uri(f"sqlite:///{self.path()}")

    def append(self, session: str, content: str) -> None:
        self.store.add_message(session, _li_user(content))

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [(str(m.content), None) for m in self.store.get_messages(session)]

    def durability(self) -> str:
        with self.store._session() as session:
            return _sqlite_pragmas(session.connection().connection.driver_connection)


class LlamaPostgres(Contender):
    name, family, backend = "LlamaIndex PostgresChatStore", "llamaindex", "postgres"

    def open(self) -> None:
        from llama_index.storage.chat_store.postgres import PostgresChatStore

        self.store = PostgresChatStore.from_uri(
            self.env.pg.replace("postgresql://postgres@", "postgresql://postgres:@"),
            table_name=f"{self.env.tag}_li",
        )

    def append(self, session: str, content: str) -> None:
        self.store.add_message(session, _li_user(content))

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [(str(m.content), None) for m in self.store.get_messages(session)]

    def durability(self) -> str:
        return _pg_commit(self.env.pg)

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _drop_pg(env, f"DROP TABLE IF EXISTS public.data_{env.tag}_li, public.{env.tag}_li")


class LlamaRedis(Contender):
    name, family, backend = "LlamaIndex RedisChatStore", "llamaindex", "redis"

    def open(self) -> None:
        from llama_index.storage.chat_store.redis import RedisChatStore

        self.store = RedisChatStore(redis_url=self.env.redis)

    def key(self, session: str) -> str:
        return f"{self.env.tag}-li-{session}"

    def append(self, session: str, content: str) -> None:
        self.store.add_message(self.key(session), _li_user(content))

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [(str(m.content), None) for m in self.store.get_messages(self.key(session))]

    def durability(self) -> str:
        return _redis_persistence(self.env.redis)

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _del_redis(env, f"{env.tag}-li-*")


class LlamaMemorySql(Contender):
    """``Memory`` per request over one long-lived ``SQLAlchemyChatStore`` (aiosqlite file)."""

    name, family, backend = "LlamaIndex Memory + SQLAlchemyChatStore", "llamaindex", "sqlite"

    def open(self) -> None:
        from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore

        self.store = SQLAlchemyChatStore(
            table_name="memory", async_database_uri=f"sqlite+aiosqlite:///{self.path()}"
        )

    def memory(self, session: str) -> Any:
        from llama_index.core.memory import Memory

        return Memory.from_defaults(session_id=session, chat_store=self.store)

    def append(self, session: str, content: str) -> None:
        self.memory(session).put(_li_user(content))

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [(str(m.content), None) for m in self.memory(session).get_all()]

    def durability(self) -> str:
        from llama_index.core.async_utils import asyncio_run

        async def probe() -> str:
            await self.store._initialize()
            async with self.store._async_engine.connect() as conn:
                raw = await conn.get_raw_connection()
                cur = await raw.driver_connection.execute("PRAGMA journal_mode")
                mode = (await cur.fetchone())[0]
                cur = await raw.driver_connection.execute("PRAGMA synchronous")
                level = (await cur.fetchone())[0]
            return (
                f"sqlite journal={mode} synchronous={ {1: 'NORMAL', 2: 'FULL'}.get(level, level) }"
            )

        return str(asyncio_run(probe()))


# ---------------------------------------------------------------- LangChain


class _LangchainSql(Contender):
    family = "langchain"

    def engine_url(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(self.engine_url())

    def history(self, session: str) -> Any:
        from langchain_community.chat_message_histories import SQLChatMessageHistory

        return SQLChatMessageHistory(
            session, connection=self.engine, table_name=f"{self.env.tag}_lc"
        )

    def append(self, session: str, content: str) -> None:
        from langchain_core.messages import HumanMessage

        self.history(session).add_message(HumanMessage(content=content))

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [(str(m.content), None) for m in self.history(session).messages]

    def close(self) -> None:
        self.engine.dispose()


class LangchainSqlSqlite(_LangchainSql):
    name, backend = "LangChain SQLChatMessageHistory sqlite", "sqlite"

    def engine_url(self) -> str:
        return f"sqlite:///{self.path()}"

    def durability(self) -> str:
        return _sqlalchemy_pragmas(self.engine)


class LangchainSqlPostgres(_LangchainSql):
    name, backend = "LangChain SQLChatMessageHistory postgres", "postgres"

    def engine_url(self) -> str:
        return self.env.pg_sqlalchemy("psycopg")

    def durability(self) -> str:
        return _pg_commit(self.env.pg)

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _drop_pg(env, f"DROP TABLE IF EXISTS {env.tag}_lc")


class LangchainRedis(Contender):
    name, family, backend = "LangChain RedisChatMessageHistory", "langchain", "redis"

    def history(self, session: str) -> Any:
        from langchain_community.chat_message_histories import RedisChatMessageHistory

        return RedisChatMessageHistory(
            session, url=self.env.redis, key_prefix=f"{self.env.tag}-lc:"
        )

    def append(self, session: str, content: str) -> None:
        from langchain_core.messages import HumanMessage

        history = self.history(session)
        history.add_message(HumanMessage(content=content))
        history.redis_client.close()

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [(str(m.content), None) for m in self.history(session).messages]

    def durability(self) -> str:
        return _redis_persistence(self.env.redis)

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _del_redis(env, f"{env.tag}-lc:*")


class LangchainPostgres(Contender):
    """langchain-postgres: one psycopg connection per process, a history object per request."""

    name, family, backend = "langchain-postgres PostgresChatMessageHistory", "langchain", "postgres"

    def open(self) -> None:
        import psycopg
        from langchain_postgres import PostgresChatMessageHistory

        self.conn = psycopg.connect(self.env.pg)
        PostgresChatMessageHistory.create_tables(self.conn, f"{self.env.tag}_lp")

    def history(self, session: str) -> Any:
        from langchain_postgres import PostgresChatMessageHistory

        sid = str(uuid.uuid5(uuid.NAMESPACE_URL, session))  # it takes UUIDs only
        return PostgresChatMessageHistory(f"{self.env.tag}_lp", sid, sync_connection=self.conn)

    def append(self, session: str, content: str) -> None:
        from langchain_core.messages import HumanMessage

        self.history(session).add_messages([HumanMessage(content=content)])

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [(str(m.content), None) for m in self.history(session).messages]

    def durability(self) -> str:
        return _pg_commit(self.env.pg)

    def close(self) -> None:
        self.conn.close()

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _drop_pg(env, f"DROP TABLE IF EXISTS {env.tag}_lp")


# ---------------------------------------------------------------- OpenAI Agents


class AgentsSqlite(Contender):
    """``SQLiteSession(session_id, db_path)`` per request, closed after it."""

    name, family, backend = "Agents SQLiteSession", "agents", "sqlite"

    def open(self) -> None:
        self.loop = asyncio.new_event_loop()

    def session(self, session: str) -> Any:
        from agents import SQLiteSession

        return SQLiteSession(session, self.path())

    def append(self, session: str, content: str) -> None:
        s = self.session(session)
        try:
            self.loop.run_until_complete(s.add_items([{"role": "user", "content": content}]))
        finally:
            s.close()

    def read(self, session: str) -> list[tuple[str, int | None]]:
        s = self.session(session)
        try:
            items = self.loop.run_until_complete(s.get_items())
        finally:
            s.close()
        return [(str(i.get("content")), None) for i in items]

    def durability(self) -> str:
        s = self.session("probe")
        try:
            return _sqlite_pragmas(s._get_connection())
        finally:
            s.close()

    def close(self) -> None:
        self.loop.close()


# ---------------------------------------------------------------- raw drivers


class RawSqlite(Contender):
    """sqlite3, WAL, synchronous=FULL (chatkeep's default), busy timeout, one INSERT per append."""

    name, family, backend = "raw sqlite3 FULL", "raw", "sqlite"

    def open(self) -> None:
        self.conn = sqlite3.connect(self.path(), timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS m (id INTEGER PRIMARY KEY, session TEXT, content TEXT)"
        )
        self.conn.execute("CREATE INDEX IF NOT EXISTS m_s ON m (session, id)")

    def append(self, session: str, content: str) -> None:
        self.conn.execute("INSERT INTO m (session, content) VALUES (?, ?)", (session, content))

    def read(self, session: str) -> list[tuple[str, int | None]]:
        rows = self.conn.execute("SELECT content FROM m WHERE session = ? ORDER BY id", (session,))
        return [(r[0], None) for r in rows]

    def durability(self) -> str:
        return _sqlite_pragmas(self.conn)

    def close(self) -> None:
        self.conn.close()


class RawPsycopg(Contender):
    name, family, backend = "raw psycopg", "raw", "postgres"

    def open(self) -> None:
        import psycopg

        self.conn = psycopg.connect(self.env.pg, autocommit=True)
        self.conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.env.tag}_raw "  # type: ignore[arg-type]
            "(id bigserial PRIMARY KEY, session text NOT NULL, content text NOT NULL)"
        )

    def append(self, session: str, content: str) -> None:
        self.conn.execute(
            f"INSERT INTO {self.env.tag}_raw (session, content) VALUES (%s, %s)",  # type: ignore[arg-type]
            (session, content),
        )

    def read(self, session: str) -> list[tuple[str, int | None]]:
        rows = self.conn.execute(
            f"SELECT content FROM {self.env.tag}_raw WHERE session = %s ORDER BY id",  # type: ignore[arg-type]
            (session,),
        )
        return [(r[0], None) for r in rows]

    def durability(self) -> str:
        return _pg_commit(self.env.pg)

    def close(self) -> None:
        self.conn.close()

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _drop_pg(env, f"DROP TABLE IF EXISTS {env.tag}_raw")


class RawRedis(Contender):
    name, family, backend = "raw redis-py", "raw", "redis"

    def open(self) -> None:
        import redis

        self.client = redis.Redis.from_url(self.env.redis)

    def append(self, session: str, content: str) -> None:
        self.client.rpush(f"{self.env.tag}-raw-{session}", content)

    def read(self, session: str) -> list[tuple[str, int | None]]:
        return [
            (v.decode(), None) for v in self.client.lrange(f"{self.env.tag}-raw-{session}", 0, -1)
        ]

    def durability(self) -> str:
        return _redis_persistence(self.env.redis)

    def close(self) -> None:
        self.client.close()

    @classmethod
    def cleanup(cls, env: Env) -> None:
        _del_redis(env, f"{env.tag}-raw-*")


CONTENDERS: dict[str, type[Contender]] = {
    c.name: c
    for c in (
        ChatkeepSqlite, ChatkeepPostgres, ChatkeepRedis, ChatkeepFile,
        LlamaSimple, LlamaSqlite, LlamaPostgres, LlamaRedis, LlamaMemorySql,
        LangchainSqlSqlite, LangchainSqlPostgres, LangchainRedis, LangchainPostgres,
        AgentsSqlite,
        RawSqlite, RawPsycopg, RawRedis,
    )
}  # fmt: skip
