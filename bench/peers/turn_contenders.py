"""The contenders of the full-chat-turn workload: each framework's own memory API + its LLM double.

A turn is what a web handler does per request: make a fresh memory/history/session object over
the long-lived store (or engine, connection, client), load the window, call the LLM, store the
user message and the reply. The offline doubles record what they were given (``SEEN``), so the
workload can check after timing that the prompt held the previous turn: no contender is timed
doing less work. ``fill()`` stores the history through the framework's own bulk call.

* LlamaIndex: ``SimpleChatEngine.from_defaults(llm=<MockLLM>, memory=...).chat(q)`` with a
  fresh ``ChatMemoryBuffer.from_defaults(token_limit=3000, chat_store=..., chat_store_key=sid)``,
  or ``Memory.from_defaults(session_id, token_limit=3000, chat_store=<SQLAlchemyChatStore>)``,
  or chatkeep's ``ChatKeepMemory.from_defaults(session_id, token_limit=3000, store=...)``.
* LangChain: ``RunnableWithMessageHistory(prompt | trim_messages(3000) | <FakeListChatModel>,
  get_session_history)`` (trimmed with chatkeep's token counter, so all cut at the same place);
  chatkeep: ``with_chatkeep_history(prompt | model, store=..., token_limit=3000)`` (a turn under
  the session's lease), and the drop-in: the same chain as the peers with
  ``ChatKeepMessageHistory(sid, store=..., token_limit=3000)`` as the session history.
* Agents: ``Runner.run_sync(Agent(model=ScriptedModel(...)), q, session=...)`` with a fresh
  ``SQLiteSession(sid, path)`` (it sends the whole history: it has no token window; a second
  row caps it at ``SessionSettings(limit=40)`` items, about 3,000 tokens here) or
  ``ChatKeepSession(sid, store=..., token_budget=3000)``.
* chatkeep: ``Memory(sid, store=...).turn(q)`` with an offline responder.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import warnings
from typing import Any, ClassVar

from bench.peers.writers import Env

TOKEN_LIMIT = 3000
SEEN: dict[str, Any] = {}  # what the last LLM double call was given
REPLY: dict[str, str] = {"text": ""}  # what the doubles answer next


class TurnContender:
    name: ClassVar[str]
    family: ClassVar[str]
    backend: ClassVar[str]
    durability: str = ""

    def __init__(self, env: Env) -> None:
        self.env = env
        slug = "".join(c if c.isalnum() else "_" for c in type(self).__name__.lower())
        self.tag = f"{env.tag}_t_{slug}"

    def open(self) -> None: ...

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    def turn(self, sid: str, question: str) -> str:
        raise NotImplementedError

    def close(self) -> None: ...


# ---------------------------------------------------------------- chatkeep Memory.turn


def ck_fill(store: Any, sid: str, msgs: list[tuple[str, str]]) -> None:
    import chatkeep

    for i in range(0, len(msgs), 1000):
        chunk = msgs[i : i + 1000]
        store.append(sid, [chatkeep.Message.from_dict({"role": r, "content": t}) for r, t in chunk])


class _CkMemory(TurnContender):
    family = "chatkeep"

    def url(self) -> str:
        raise NotImplementedError

    def open(self) -> None:
        import chatkeep

        self.store = chatkeep.open_store(self.url())

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        ck_fill(self.store, sid, msgs)

    def turn(self, sid: str, question: str) -> str:
        import chatkeep

        with chatkeep.Memory(sid, store=self.store, token_limit=TOKEN_LIMIT).turn(question) as t:
            SEEN["prompt"] = t.messages
            t.reply(REPLY["text"])
        return REPLY["text"]

    def close(self) -> None:
        self.store.close()


class CkSqlite(_CkMemory):
    name, backend = "chatkeep sqlite", "sqlite"

    def url(self) -> str:
        return f"sqlite:///{self.env.tmp}/{self.tag}.db"


class CkPostgres(_CkMemory):
    name, backend = "chatkeep postgres", "postgres"

    def url(self) -> str:
        return f"{self.env.pg}?schema={self.tag}"

    def close(self) -> None:
        from bench.peers.writers import _drop_pg

        super().close()
        _drop_pg(self.env, f"DROP SCHEMA IF EXISTS {self.tag} CASCADE")


class CkRedis(_CkMemory):
    name, backend = "chatkeep redis", "redis"

    def url(self) -> str:
        return f"{self.env.redis}?prefix={self.tag}&durability_warning=off"

    def close(self) -> None:
        from bench.peers.writers import _del_redis

        super().close()
        _del_redis(self.env, f"*{self.tag}*")


# ---------------------------------------------------------------- LlamaIndex


def _li(role: str, text: str) -> Any:
    from llama_index.core.llms import ChatMessage

    return ChatMessage(role=role, content=text)


def li_llm() -> Any:
    from llama_index.core.base.llms.types import CompletionResponse
    from llama_index.core.llms import MockLLM
    from llama_index.core.llms.callbacks import llm_completion_callback

    class RecordingMockLLM(MockLLM):
        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            SEEN["prompt"] = prompt
            return CompletionResponse(text=REPLY["text"])

    return RecordingMockLLM()


class _LlamaEngine(TurnContender):
    family = "llamaindex"

    def open(self) -> None:
        self.llm = li_llm()  # long-lived, as an app keeps its LLM client
        self.store = self.chat_store()

    def chat_store(self) -> Any:
        raise NotImplementedError

    def memory(self, sid: str) -> Any:
        from llama_index.core.memory import ChatMemoryBuffer

        return ChatMemoryBuffer.from_defaults(
            token_limit=TOKEN_LIMIT, chat_store=self.store, chat_store_key=sid
        )

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        self.store.set_messages(sid, [_li(r, t) for r, t in msgs])

    def turn(self, sid: str, question: str) -> str:
        from llama_index.core.chat_engine import SimpleChatEngine

        engine = SimpleChatEngine.from_defaults(llm=self.llm, memory=self.memory(sid))
        return str(engine.chat(question))


class LlamaSqlite(_LlamaEngine):
    name, backend = "LlamaIndex ChatMemoryBuffer + SQLiteChatStore", "sqlite"

    def chat_store(self) -> Any:
        from llama_index.storage.chat_store.sqlite import SQLiteChatStore

        return SQLiteChatStore.from_uri(f"sqlite:///{self.env.tmp}/{self.tag}.db")


class LlamaPostgres(_LlamaEngine):
    name, backend = "LlamaIndex ChatMemoryBuffer + PostgresChatStore", "postgres"

    def chat_store(self) -> Any:
        from llama_index.storage.chat_store.postgres import PostgresChatStore

        url = self.env.pg.replace("postgresql://postgres@", "postgresql://postgres:@")
        return PostgresChatStore.from_uri(url, table_name=self.tag)

    def close(self) -> None:
        from bench.peers.writers import _drop_pg

        _drop_pg(self.env, f"DROP TABLE IF EXISTS public.data_{self.tag}, public.{self.tag}")


class LlamaRedis(_LlamaEngine):
    name, backend = "LlamaIndex ChatMemoryBuffer + RedisChatStore", "redis"

    def chat_store(self) -> Any:
        from llama_index.storage.chat_store.redis import RedisChatStore

        return RedisChatStore(redis_url=self.env.redis)

    def memory(self, sid: str) -> Any:
        return super().memory(f"{self.tag}-{sid}")

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        super().fill(f"{self.tag}-{sid}", msgs)

    def close(self) -> None:
        from bench.peers.writers import _del_redis

        _del_redis(self.env, f"{self.tag}-*")


class LlamaMemorySql(_LlamaEngine):
    name, backend = "LlamaIndex Memory + SQLAlchemyChatStore", "sqlite"

    def chat_store(self) -> Any:
        from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore

        return SQLAlchemyChatStore(
            table_name="memory",
            async_database_uri=f"sqlite+aiosqlite:///{self.env.tmp}/{self.tag}.db",
        )

    def memory(self, sid: str) -> Any:
        from llama_index.core.memory import Memory

        return Memory.from_defaults(session_id=sid, token_limit=TOKEN_LIMIT, chat_store=self.store)

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        memory = self.memory(sid)  # through Memory, so it archives what overflows, as in use
        for i in range(0, len(msgs), 500):
            memory.put_messages([_li(r, t) for r, t in msgs[i : i + 500]])


class CkLlama(_LlamaEngine):
    name, backend = "chatkeep ChatKeepMemory (LlamaIndex)", "sqlite"
    family = "chatkeep"

    def chat_store(self) -> Any:
        import chatkeep
        from chatkeep.adapters.llamaindex import ChatKeepChatStore

        self.ck = chatkeep.open_store(f"sqlite:///{self.env.tmp}/{self.tag}.db")
        return ChatKeepChatStore(self.ck)

    def memory(self, sid: str) -> Any:
        from chatkeep.adapters.llamaindex import ChatKeepMemory

        return ChatKeepMemory.from_defaults(session_id=sid, token_limit=TOKEN_LIMIT, store=self.ck)

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        ck_fill(self.ck, sid, msgs)

    def close(self) -> None:
        self.ck.close()


# ---------------------------------------------------------------- LangChain


def lc_model() -> Any:
    from langchain_core.language_models import FakeListChatModel

    class RecordingFakeChatModel(FakeListChatModel):
        def _call(self, messages: Any, *args: Any, **kwargs: Any) -> str:
            SEEN["prompt"] = messages
            return REPLY["text"]

    return RecordingFakeChatModel(responses=["unused"])


def lc_prompt() -> Any:
    from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder

    return ChatPromptTemplate.from_messages(
        [
            ("system", "You are a helpful assistant."),
            MessagesPlaceholder("history"),
            ("human", "{question}"),
        ]
    )


def lc_counter() -> Any:
    """chatkeep's count per message, so trim_messages cuts where chatkeep's window does."""
    from chatkeep.policies.tokens import MESSAGE_OVERHEAD
    from chatkeep.tokenizers import get_tokenizer

    tok = get_tokenizer()

    def count(messages: list[Any]) -> int:
        return sum(MESSAGE_OVERHEAD + tok.count(m.text) for m in messages)

    return count


class _LangChain(TurnContender):
    family = "langchain"

    def open(self) -> None:
        from langchain_core.messages import trim_messages
        from langchain_core.runnables.history import RunnableWithMessageHistory

        trim = trim_messages(
            max_tokens=TOKEN_LIMIT, strategy="last", start_on="human", include_system=True,
            token_counter=lc_counter(),
        )  # fmt: skip
        with warnings.catch_warnings():  # its deprecation is a fact about the peer, not news
            warnings.simplefilter("ignore")
            self.chain = RunnableWithMessageHistory(
                lc_prompt() | trim | lc_model(),
                self.history,
                input_messages_key="question",
                history_messages_key="history",
            )

    def history(self, sid: str) -> Any:
        raise NotImplementedError

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        from langchain_core.messages import AIMessage, HumanMessage

        self.history(sid).add_messages(
            [HumanMessage(t) if r == "user" else AIMessage(t) for r, t in msgs]
        )

    def turn(self, sid: str, question: str) -> str:
        out = self.chain.invoke(
            {"question": question}, config={"configurable": {"session_id": sid}}
        )
        return str(out.content)


class _LcSql(_LangChain):
    def open(self) -> None:
        from sqlalchemy import create_engine

        self.engine = create_engine(self.engine_url())
        super().open()

    def engine_url(self) -> str:
        raise NotImplementedError

    def history(self, sid: str) -> Any:
        from langchain_community.chat_message_histories import SQLChatMessageHistory

        return SQLChatMessageHistory(sid, connection=self.engine, table_name=self.tag)

    def close(self) -> None:
        self.engine.dispose()


class LcSqlite(_LcSql):
    name, backend = "LangChain SQLChatMessageHistory sqlite", "sqlite"

    def engine_url(self) -> str:
        return f"sqlite:///{self.env.tmp}/{self.tag}.db"


class LcSqlPostgres(_LcSql):
    name, backend = "LangChain SQLChatMessageHistory postgres", "postgres"

    def engine_url(self) -> str:
        return self.env.pg_sqlalchemy("psycopg")

    def close(self) -> None:
        from bench.peers.writers import _drop_pg

        super().close()
        _drop_pg(self.env, f"DROP TABLE IF EXISTS {self.tag}")


class LcRedis(_LangChain):
    name, backend = "LangChain RedisChatMessageHistory", "redis"

    def history(self, sid: str) -> Any:
        from langchain_community.chat_message_histories import RedisChatMessageHistory

        return RedisChatMessageHistory(sid, url=self.env.redis, key_prefix=f"{self.tag}:")

    def close(self) -> None:
        from bench.peers.writers import _del_redis

        _del_redis(self.env, f"{self.tag}:*")


class LcPostgres(_LangChain):
    name, backend = "langchain-postgres PostgresChatMessageHistory", "postgres"

    def open(self) -> None:
        import psycopg
        from langchain_postgres import PostgresChatMessageHistory

        self.conn = psycopg.connect(self.env.pg)
        PostgresChatMessageHistory.create_tables(self.conn, self.tag)
        super().open()

    def history(self, sid: str) -> Any:
        from langchain_postgres import PostgresChatMessageHistory

        return PostgresChatMessageHistory(
            self.tag, str(uuid.uuid5(uuid.NAMESPACE_URL, sid)), sync_connection=self.conn
        )

    def close(self) -> None:
        from bench.peers.writers import _drop_pg

        self.conn.close()
        _drop_pg(self.env, f"DROP TABLE IF EXISTS {self.tag}")


class CkLangChain(_LangChain):
    name, backend = "chatkeep with_chatkeep_history (LangChain)", "sqlite"
    family = "chatkeep"

    def open(self) -> None:
        import chatkeep
        from chatkeep.adapters.langchain import with_chatkeep_history

        self.store = chatkeep.open_store(f"sqlite:///{self.env.tmp}/{self.tag}.db")
        self.chain = with_chatkeep_history(
            lc_prompt() | lc_model(),
            store=self.store,
            token_limit=TOKEN_LIMIT,
            input_messages_key="question",
            history_messages_key="history",
        )

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        ck_fill(self.store, sid, msgs)

    def close(self) -> None:
        self.store.close()


class CkLcHistory(_LangChain):
    """The drop-in: the peers' chain, with ``ChatKeepMessageHistory(token_limit=3000)``."""

    name, backend = "chatkeep ChatKeepMessageHistory (LangChain)", "sqlite"
    family = "chatkeep"

    def open(self) -> None:
        import chatkeep

        self.store = chatkeep.open_store(f"sqlite:///{self.env.tmp}/{self.tag}.db")
        super().open()

    def history(self, sid: str) -> Any:
        from chatkeep.adapters.langchain import ChatKeepMessageHistory

        return ChatKeepMessageHistory(sid, store=self.store, token_limit=TOKEN_LIMIT)

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        ck_fill(self.store, sid, msgs)

    def close(self) -> None:
        self.store.close()


# ---------------------------------------------------------------- OpenAI Agents


def agents_agent() -> Any:
    from agents import Agent
    from agents.testing import ModelStep, ScriptedModel, assistant_message

    def respond(call: Any) -> list[Any]:
        SEEN["prompt"] = call.input
        return [assistant_message(REPLY["text"])]

    return Agent(name="bot", model=ScriptedModel([ModelStep.respond(respond)]))


def _agents_item(i: int, role: str, text: str) -> dict[str, Any]:
    if role == "user":
        return {"role": "user", "content": text}
    content = [{"type": "output_text", "text": text, "annotations": []}]
    return {"role": "assistant", "content": content, "type": "message", "status": "completed",
            "id": f"msg_{i}"}  # fmt: skip


class _Agents(TurnContender):
    family = "agents"

    def open(self) -> None:
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)

    def session(self, sid: str) -> Any:
        raise NotImplementedError

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        items = [_agents_item(i, r, t) for i, (r, t) in enumerate(msgs)]
        s = self.session(sid)
        for i in range(0, len(items), 1000):
            self.loop.run_until_complete(s.add_items(items[i : i + 1000]))
        self.done(s)

    def done(self, session: Any) -> None: ...

    def turn(self, sid: str, question: str) -> str:
        from agents import Runner

        session = self.session(sid)
        try:
            result = Runner.run_sync(agents_agent(), question, session=session)
        finally:
            self.done(session)
        return str(result.final_output)


class AgentsSqlite(_Agents):
    name, backend = "Agents SQLiteSession", "sqlite"

    def session(self, sid: str) -> Any:
        from agents import SQLiteSession

        return SQLiteSession(sid, f"{self.env.tmp}/{self.tag}.db")

    def done(self, session: Any) -> None:
        session.close()


class AgentsSqliteLimit(AgentsSqlite):
    """``SessionSettings(limit=40)``: about the 3,000 tokens the others send (40 x ~78)."""

    name = "Agents SQLiteSession limit=40"

    def session(self, sid: str) -> Any:
        from agents import SQLiteSession
        from agents.memory import SessionSettings

        return SQLiteSession(
            sid, f"{self.env.tmp}/{self.tag}.db", session_settings=SessionSettings(limit=40)
        )


class CkAgents(_Agents):
    name, backend = "chatkeep ChatKeepSession (Agents)", "sqlite"
    family = "chatkeep"

    def open(self) -> None:
        import chatkeep

        super().open()
        self.store = chatkeep.open_store(f"sqlite:///{self.env.tmp}/{self.tag}.db")

    def session(self, sid: str) -> Any:
        from chatkeep.adapters.openai_agents import ChatKeepSession

        return ChatKeepSession(sid, store=self.store, token_budget=TOKEN_LIMIT)

    def close(self) -> None:
        self.store.close()


def prompt_text(prompt: Any) -> str:
    """The recorded prompt as one string, to search for the previous turn's marker."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and prompt and hasattr(prompt[0], "content"):
        return "\n".join(str(m.content) for m in prompt)
    return json.dumps(prompt, default=str)


TURN_CONTENDERS: list[type[TurnContender]] = [
    CkSqlite, CkPostgres, CkRedis,
    CkLlama, LlamaSqlite, LlamaPostgres, LlamaRedis, LlamaMemorySql,
    CkLangChain, CkLcHistory, LcSqlite, LcSqlPostgres, LcRedis, LcPostgres,
    CkAgents, AgentsSqlite, AgentsSqliteLimit,
]  # fmt: skip
