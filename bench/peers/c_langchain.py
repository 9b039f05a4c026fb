"""LangChain: chat message histories, with ``trim_messages`` for the window.

Per request, a fresh history object over what the process keeps: ``SQLChatMessageHistory(sid,
connection=engine)`` (one SQLAlchemy engine, SQLite or PostgreSQL), langchain-postgres
``PostgresChatMessageHistory(table, uuid, sync_connection=conn)`` (one psycopg connection, as
its docs show) and ``RedisChatMessageHistory(sid, url=...)`` (it builds its client from the
URL: that is its API). Append: ``add_messages([HumanMessage(text)])``. Window:
``trim_messages(history.messages, max_tokens=3000, strategy="last", start_on="human",
token_counter=...)`` with chatkeep's own counter per message (text tokens + the same
per-message overhead), so every contender cuts at the same place.
Fills use each history's ``add_messages`` (Redis: its LPUSH of the same JSON, many per call).
"""

from __future__ import annotations

import json
import uuid
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


def _lc(role: str, text: str) -> Any:
    from langchain_core.messages import AIMessage, HumanMessage

    return HumanMessage(text) if role == "user" else AIMessage(text)


def counter() -> Any:
    """chatkeep's count for a list of messages (trim_messages calls it on candidate slices)."""
    from chatkeep.policies.tokens import MESSAGE_OVERHEAD
    from chatkeep.tokenizers import get_tokenizer

    tok = get_tokenizer()

    def count(messages: list[Any]) -> int:
        return sum(MESSAGE_OVERHEAD + tok.count(m.text) for m in messages)

    return count


class _History(Contender):
    family = "langchain"

    def open(self) -> None:
        self.count = counter()

    def history(self, sid: str) -> Any:
        raise NotImplementedError

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        self.history(sid).add_messages([_lc(r, t) for r, t in msgs])

    def append(self, sid: str, text: str) -> None:
        self.history(sid).add_messages([_lc("user", text)])

    def window(self, sid: str, k: int) -> int:
        from langchain_core.messages import trim_messages

        trimmed = trim_messages(
            self.history(sid).messages,
            max_tokens=TOKEN_LIMIT,
            strategy="last",
            start_on="human",
            token_counter=self.count,
        )
        return len(trimmed)


class _SQL(_History):
    note = "SQLChatMessageHistory(sid, connection=engine) per request + trim_messages"
    table = "message_store"

    def history(self, sid: str) -> Any:
        from langchain_community.chat_message_histories import SQLChatMessageHistory

        return SQLChatMessageHistory(sid, table_name=self.table, connection=self.engine)


class LangChainSqlite(_SQL):
    name, backend = "LangChain SQLChatMessageHistory sqlite", "sqlite"

    def open(self) -> None:
        from sqlalchemy import create_engine

        super().open()
        self.engine = create_engine(f"sqlite:///{self.tmp}/{self.tag}.db")
        with self.engine.connect() as conn:
            self.durability = sqlite_pragmas(conn)

    def close(self) -> None:
        self.engine.dispose()


class LangChainSqlPostgres(_SQL):
    name, backend = "LangChain SQLChatMessageHistory postgres", "postgres"

    def open(self) -> None:
        from sqlalchemy import create_engine

        super().open()
        self.table = self.tag
        self.engine = create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
        self.durability = pg_durability()

    def close(self) -> None:
        self.engine.dispose()
        pg_drop(self.tag)


class LangChainPostgres(_History):
    name, backend = "langchain-postgres PostgresChatMessageHistory", "postgres"
    note = "PostgresChatMessageHistory(table, uuid, sync_connection=conn) per request + trim"

    def open(self) -> None:
        import psycopg
        from langchain_postgres import PostgresChatMessageHistory

        super().open()
        self.conn = psycopg.connect(PG_URL)
        PostgresChatMessageHistory.create_tables(self.conn, self.tag)
        self.durability = pg_durability()

    def history(self, sid: str) -> Any:
        from langchain_postgres import PostgresChatMessageHistory

        key = str(uuid.uuid5(uuid.NAMESPACE_URL, sid))
        return PostgresChatMessageHistory(self.tag, key, sync_connection=self.conn)

    def close(self) -> None:
        self.conn.close()
        pg_drop(self.tag)


class LangChainRedis(_History):
    name, backend = "LangChain RedisChatMessageHistory", "redis"
    note = "RedisChatMessageHistory(sid, url=...) per request + trim_messages"

    def open(self) -> None:
        super().open()
        self.durability = redis_durability()

    def history(self, sid: str) -> Any:
        from langchain_community.chat_message_histories import RedisChatMessageHistory

        return RedisChatMessageHistory(sid, url=REDIS_URL, key_prefix=f"{self.tag}:")

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        from langchain_core.messages import message_to_dict

        history = self.history(sid)  # add_message's LPUSH, many values per call
        history.redis_client.lpush(
            history.key, *[json.dumps(message_to_dict(_lc(r, t))) for r, t in msgs]
        )

    def close(self) -> None:
        redis_cleanup(self.tag)


CONTENDERS = [LangChainSqlite, LangChainSqlPostgres, LangChainPostgres, LangChainRedis]
