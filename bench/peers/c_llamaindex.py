"""LlamaIndex: its chat stores under ``ChatMemoryBuffer``, and ``Memory`` + ``SQLAlchemyChatStore``.

Per request, a fresh ``ChatMemoryBuffer.from_defaults(token_limit=3000, chat_store=...,
chat_store_key=sid)``: ``.put(msg)`` to append, ``.get()`` for the window (LlamaIndex's default
tiktoken counter). The chat store is created once per process (it owns the engine / client),
except ``SimpleChatStore``: an app that wants its history to outlive the process loads it from
its JSON file per request and ``persist()``s after a change (a JSON rewrite, no fsync).
``Memory.from_defaults(session_id, token_limit=3000, async_engine=...)`` gets a long-lived
aiosqlite engine and runs on one event loop; its window is ``aget()`` (its active queue, kept
under ``0.7 x token_limit`` by archiving on put), filled through ``aput_messages``.
Fills write exactly what the API writes (``model_dump`` JSON), in bulk statements.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.peers.contenders import (
    PG_URL,
    REDIS_URL,
    TOKEN_LIMIT,
    Contender,
    pg_drop,
    pg_durability,
    redis_cleanup,
    redis_durability,
    sqlite_pragmas,
)


def _msg(role: str, text: str) -> Any:
    from llama_index.core.llms import ChatMessage

    return ChatMessage(role=role, content=text)


class _Buffer(Contender):
    family = "llamaindex"

    def chat_store(self) -> Any:
        return self.store

    def _buffer(self, sid: str) -> Any:
        from llama_index.core.memory import ChatMemoryBuffer

        return ChatMemoryBuffer.from_defaults(
            token_limit=TOKEN_LIMIT, chat_store=self.chat_store(), chat_store_key=sid
        )

    def append(self, sid: str, text: str) -> None:
        self._buffer(sid).put(_msg("user", text))

    def window(self, sid: str, k: int) -> int:
        return len(self._buffer(sid).get())


class LlamaSimple(_Buffer):
    name, backend = "LlamaIndex SimpleChatStore+persist", "file"
    note = "SimpleChatStore.from_persist_path per request, ChatMemoryBuffer, persist() after put"

    def open(self) -> None:
        from llama_index.core.storage.chat_store import SimpleChatStore

        self.path = str(self.tmp / f"{self.tag}.json")
        SimpleChatStore().persist(self.path)
        self.durability = "JSON file rewritten on persist(), no fsync"

    def chat_store(self) -> Any:
        from llama_index.core.storage.chat_store import SimpleChatStore

        return SimpleChatStore.from_persist_path(self.path)

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        store = self.chat_store()
        store.set_messages(sid, store.get_messages(sid) + [_msg(r, t) for r, t in msgs])
        store.persist(self.path)

    def append(self, sid: str, text: str) -> None:
        from llama_index.core.memory import ChatMemoryBuffer

        store = self.chat_store()
        buffer = ChatMemoryBuffer.from_defaults(
            token_limit=TOKEN_LIMIT, chat_store=store, chat_store_key=sid
        )
        buffer.put(_msg("user", text))
        store.persist(self.path)


class LlamaSqlite(_Buffer):
    name, backend = "LlamaIndex SQLiteChatStore", "sqlite"
    note = "SQLiteChatStore.from_uri once; ChatMemoryBuffer per request"

    def open(self) -> None:
        from llama_index.storage.chat_store.sqlite import SQLiteChatStore

        self.store = SQLiteChatStore.from_uri(f"sqlite:///{self.tmp}/{self.tag}.db")
        with self.store._session() as session:
            self.durability = sqlite_pragmas(session.connection())

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        self.store.set_messages(sid, [_msg(r, t) for r, t in msgs])  # a bulk INSERT here


class LlamaPostgres(_Buffer):
    name, backend = "LlamaIndex PostgresChatStore", "postgres"
    note = "PostgresChatStore.from_uri once (one row per key, a JSON array); buffer per request"

    def open(self) -> None:
        from llama_index.storage.chat_store.postgres import PostgresChatStore

        uri = PG_URL.replace("postgresql://postgres@", "postgresql+psycopg://postgres:@")
        self.store = PostgresChatStore.from_uri(uri, table_name=self.tag)
        self.durability = pg_durability()

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        from sqlalchemy import text

        table = self.store._table_class.__tablename__
        with self.store._session() as session:  # add_message's statement, all at once
            session.execute(
                text(
                    f"INSERT INTO {self.store.schema_name}.{table} (key, value) "
                    "VALUES (:key, :value) ON CONFLICT (key) DO UPDATE SET "
                    f"value = array_cat({table}.value, :value)"
                ),
                {"key": sid, "value": [_msg(r, t).model_dump_json() for r, t in msgs]},
            )
            session.commit()

    def close(self) -> None:
        self.store._session.kw["bind"].dispose()
        pg_drop(self.store._table_class.__tablename__)


class LlamaRedis(_Buffer):
    name, backend = "LlamaIndex RedisChatStore", "redis"
    note = "RedisChatStore(redis_url) once; ChatMemoryBuffer per request"

    def open(self) -> None:
        from llama_index.storage.chat_store.redis import RedisChatStore

        self.store = RedisChatStore(redis_url=REDIS_URL)
        self.durability = redis_durability()

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        # add_message's RPUSH of model_dump_json(), many values per call
        self.store._redis_client.rpush(
            f"{self.tag}:{sid}", *[_msg(r, t).model_dump_json() for r, t in msgs]
        )

    def append(self, sid: str, text: str) -> None:
        super().append(f"{self.tag}:{sid}", text)

    def window(self, sid: str, k: int) -> int:
        return super().window(f"{self.tag}:{sid}", k)

    def close(self) -> None:
        redis_cleanup(self.tag)


class LlamaMemory(Contender):
    name, family, backend = "LlamaIndex Memory+SQLAlchemyChatStore", "llamaindex", "sqlite"
    note = (
        "Memory.from_defaults(session_id, token_limit=3000, async_engine) per request; aput / aget"
    )

    def open(self) -> None:
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import create_async_engine

        self.loop = asyncio.new_event_loop()
        self.engine = create_async_engine(f"sqlite+aiosqlite:///{self.tmp}/{self.tag}.db")

        async def pragmas() -> str:
            async with self.engine.connect() as conn:
                jm = (await conn.execute(text("PRAGMA journal_mode"))).scalar()
                sync = (await conn.execute(text("PRAGMA synchronous"))).scalar()
            return f"sqlite journal={str(jm).upper()} synchronous=" + {
                0: "OFF",
                1: "NORMAL",
                2: "FULL",
                3: "EXTRA",
            }.get(int(sync or 0), str(sync))

        self.durability = self.loop.run_until_complete(pragmas())

    def _memory(self, sid: str) -> Any:
        from llama_index.core.memory import Memory

        return Memory.from_defaults(
            session_id=sid, token_limit=TOKEN_LIMIT, async_engine=self.engine
        )

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        self.loop.run_until_complete(self._fill(sid, [_msg(r, t) for r, t in msgs]))

    async def _fill(self, sid: str, msgs: list[Any]) -> None:
        """What ``aput_messages(msgs)`` leaves behind, without its slow archiving loop over
        thousands of messages: everything older than the newest 100 is stored archived (the
        archiving's end state; it would archive the queue already there first), then the
        newest 100 go through ``aput_messages`` itself, which archives down to its limit."""
        from llama_index.core.storage.chat_store.base_db import MessageStatus

        memory = self._memory(sid)
        store, head, tail = memory.sql_store, msgs[:-100], msgs[-100:]
        if head:
            active = await store.count_messages(sid, status=MessageStatus.ACTIVE)
            if active:
                await store.archive_oldest_messages(sid, active)
            await store.add_messages(sid, head, status=MessageStatus.ARCHIVED)
        await memory.aput_messages(tail)

    def append(self, sid: str, text: str) -> None:
        self.loop.run_until_complete(self._memory(sid).aput(_msg("user", text)))

    def window(self, sid: str, k: int) -> int:
        return len(self.loop.run_until_complete(self._memory(sid).aget()))

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.dispose())
        self.loop.close()


CONTENDERS = [LlamaSimple, LlamaSqlite, LlamaPostgres, LlamaRedis, LlamaMemory]
