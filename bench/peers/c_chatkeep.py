"""chatkeep: ``Memory`` on each backend, and the framework adapters a framework user would call.

The store is opened once per process (what the docs say); each request builds a fresh
``Memory`` / adapter object over it: ``Memory(sid, store=store).add(...)`` and
``.window()`` (3,000 tokens); LlamaIndex ``ChatKeepMemory.put`` / ``.get``; LangChain
``ChatKeepMessageHistory.add_messages`` / ``.messages`` with ``token_limit=3000``; Agents
``ChatKeepSession.add_items`` / ``.get_items`` with ``token_budget=3000``. Histories are
filled through the same path in batches of 1,000 (one atomic append each).
"""

from __future__ import annotations

import asyncio
from typing import Any

import chatkeep
from bench.peers.contenders import (
    PG_URL,
    REDIS_URL,
    RUN_ID,
    TOKEN_LIMIT,
    Contender,
    pg_durability,
    redis_cleanup,
    redis_durability,
    sqlite_pragmas,
)

BATCH = 1000


class _Chatkeep(Contender):
    family = "chatkeep"
    max_history = 100_000

    def url(self) -> str:
        return f"sqlite:///{self.tmp}/{self.tag}.db"

    def open(self) -> None:
        self.store: Any = chatkeep.open_store(self.url())
        self.durability = self.read_durability()

    def read_durability(self) -> str:
        store = self.store
        if store.scheme == "sqlite":  # the store's own connection, as it really is
            return sqlite_pragmas(store._backend._conn)
        return pg_durability() if store.scheme == "postgresql" else redis_durability()

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        for i in range(0, len(msgs), BATCH):
            self.store.append(sid, [chatkeep.Message(r, t) for r, t in msgs[i : i + BATCH]])

    def append(self, sid: str, text: str) -> None:
        chatkeep.Memory(sid, store=self.store, token_limit=TOKEN_LIMIT).add("user", text)

    def window(self, sid: str, k: int) -> int:
        return len(
            chatkeep.Memory(sid, store=self.store, token_limit=TOKEN_LIMIT).window().messages
        )

    def close(self) -> None:
        self.store.close()


class ChatkeepSqlite(_Chatkeep):
    name, backend = "chatkeep sqlite", "sqlite"
    note = "Memory(sid, store=store).add / .window(), store opened once"


class ChatkeepSqliteNormal(_Chatkeep):
    name, backend = "chatkeep sqlite NORMAL", "sqlite"
    does = ("append",)
    note = "as chatkeep sqlite, ?synchronous=normal"

    def url(self) -> str:
        return super().url() + "?synchronous=normal"


class ChatkeepPostgres(_Chatkeep):
    name, backend = "chatkeep postgres", "postgres"
    note = "Memory over postgresql:// (psycopg pool)"

    def url(self) -> str:
        return f"{PG_URL}?schema=pb{RUN_ID}ck"

    def close(self) -> None:
        import psycopg

        self.store.close()
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS pb{RUN_ID}ck CASCADE")


class ChatkeepRedis(_Chatkeep):
    name, backend = "chatkeep redis", "redis"
    note = "Memory over redis://"

    def url(self) -> str:
        return f"{REDIS_URL}?prefix=pb{RUN_ID}ck"

    def close(self) -> None:
        self.store.close()
        redis_cleanup(f"pb{RUN_ID}ck")


class ChatkeepFile(_Chatkeep):
    name, backend = "chatkeep file", "file"
    max_history = 10_000
    note = "Memory over file:// (JSON Lines per session, fsync'd appends)"

    def url(self) -> str:
        return f"file://{self.tmp}/{self.tag}"

    def read_durability(self) -> str:
        return "JSON Lines, fsync per append"


class ChatkeepLlamaIndex(_Chatkeep):
    name, backend = "chatkeep ChatKeepMemory (LlamaIndex)", "sqlite"
    max_history = 10_000
    note = "ChatKeepMemory.from_defaults(session_id, store, token_limit=3000).put / .get()"

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        from llama_index.core.llms import ChatMessage

        from chatkeep.adapters.llamaindex import to_chatkeep

        for i in range(0, len(msgs), BATCH):
            batch = [to_chatkeep(ChatMessage(role=r, content=t)) for r, t in msgs[i : i + BATCH]]
            self.store.append(sid, batch)

    def _memory(self, sid: str) -> Any:
        from chatkeep.adapters.llamaindex import ChatKeepMemory

        return ChatKeepMemory.from_defaults(
            session_id=sid, store=self.store, token_limit=TOKEN_LIMIT
        )

    def append(self, sid: str, text: str) -> None:
        from llama_index.core.llms import ChatMessage

        self._memory(sid).put(ChatMessage(role="user", content=text))

    def window(self, sid: str, k: int) -> int:
        return len(self._memory(sid).get())


def _lc(role: str, text: str) -> Any:
    from langchain_core.messages import AIMessage, HumanMessage

    return HumanMessage(text) if role == "user" else AIMessage(text)


class ChatkeepLangChain(_Chatkeep):
    name, backend = "chatkeep ChatKeepMessageHistory (LangChain)", "sqlite"
    max_history = 10_000
    note = "ChatKeepMessageHistory(sid, store, token_limit=3000).add_messages / .messages"

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        from chatkeep.adapters.langchain import ChatKeepMessageHistory

        for i in range(0, len(msgs), BATCH):
            history = ChatKeepMessageHistory(sid, store=self.store)
            history.add_messages([_lc(r, t) for r, t in msgs[i : i + BATCH]])

    def append(self, sid: str, text: str) -> None:
        from chatkeep.adapters.langchain import ChatKeepMessageHistory

        ChatKeepMessageHistory(sid, store=self.store).add_messages([_lc("user", text)])

    def window(self, sid: str, k: int) -> int:
        from chatkeep.adapters.langchain import ChatKeepMessageHistory

        history = ChatKeepMessageHistory(sid, store=self.store, token_limit=TOKEN_LIMIT)
        return len(history.messages)


def _item(role: str, text: str) -> dict[str, Any]:
    if role == "user":
        return {"role": "user", "content": text}
    return {
        "type": "message",
        "role": "assistant",
        "status": "completed",
        "id": f"msg_{abs(hash(text)) % 10**12}",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


class ChatkeepAgents(_Chatkeep):
    name, backend = "chatkeep ChatKeepSession (Agents)", "sqlite"
    max_history = 10_000
    note = "ChatKeepSession(sid, store, token_budget=3000).add_items / .get_items()"

    def open(self) -> None:
        super().open()
        self.loop = asyncio.new_event_loop()  # one loop, as a server has

    def _session(self, sid: str, budget: int | None = None) -> Any:
        from chatkeep.adapters.openai_agents import ChatKeepSession

        return ChatKeepSession(sid, store=self.store, token_budget=budget)

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        for i in range(0, len(msgs), BATCH):
            items = [_item(r, t) for r, t in msgs[i : i + BATCH]]
            self.loop.run_until_complete(self._session(sid).add_items(items))

    def append(self, sid: str, text: str) -> None:
        self.loop.run_until_complete(self._session(sid).add_items([_item("user", text)]))

    def window(self, sid: str, k: int) -> int:
        return len(self.loop.run_until_complete(self._session(sid, TOKEN_LIMIT).get_items()))

    def close(self) -> None:
        super().close()
        self.loop.close()


CONTENDERS = [
    ChatkeepSqlite,
    ChatkeepSqliteNormal,
    ChatkeepPostgres,
    ChatkeepRedis,
    ChatkeepFile,
    ChatkeepLlamaIndex,
    ChatkeepLangChain,
    ChatkeepAgents,
]
