"""LlamaIndex's own defects (issue 4), reproduced against the real llama-index-core and
shown absent with chatkeep on the same data.

Where a defect depends on the installed versions (the pydantic serialization bug), the peer
half skips with the versions named if it does not reproduce, and the chatkeep half still runs.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

pytest.importorskip("llama_index.core")

import llama_index.core
import pydantic
from llama_index.core.llms import ChatMessage
from llama_index.core.memory import ChatMemoryBuffer
from llama_index.core.memory.memory import BaseMemoryBlock, Memory
from llama_index.core.storage.chat_store import SimpleChatStore
from llama_index.core.storage.chat_store.base_db import MessageStatus
from llama_index.core.storage.chat_store.sql import SQLAlchemyChatStore

import chatkeep
from chatkeep.adapters.llamaindex import ChatKeepChatStore, ChatKeepMemory
from chatkeep.adapters.llamaindex_db import ChatKeepDBChatStore, DurableMemory

VERSIONS = f"llama-index-core {llama_index.core.__version__}, pydantic {pydantic.VERSION}"
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "search", "arguments": json.dumps({"query": "word " * 1500})},
}


@pytest.fixture
def ck(tmp_path: Path) -> Iterator[chatkeep.Store]:
    store = chatkeep.open_store(f"sqlite:///{tmp_path}/ck.db")
    yield store
    store.close()


def both(ck: chatkeep.Store, key: str, history: list[ChatMessage], limit: int) -> tuple[Any, Any]:
    """ChatMemoryBuffer and ChatKeepMemory over the very same stored conversation."""
    ChatKeepChatStore(ck).set_messages(key, history)
    buffer = ChatMemoryBuffer.from_defaults(
        chat_store=ChatKeepChatStore(ck), chat_store_key=key, token_limit=limit
    )
    return buffer, ChatKeepMemory.from_defaults(session_id=key, store=ck, token_limit=limit)


def roles(messages: list[ChatMessage]) -> list[str]:
    return [m.role.value for m in messages]


def test_buffer_returns_a_lone_tool_message_chatkeep_never(ck: chatkeep.Store) -> None:
    history = [
        ChatMessage(role="user", content="Look it up."),
        ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [CALL]}),
        ChatMessage(
            role="tool", content="result " * 2000, additional_kwargs={"tool_call_id": "call_1"}
        ),
    ]
    buffer, ours = both(ck, "k", history, limit=500)
    assert roles(buffer.get()) == ["tool"]  # an orphaned tool result: an HTTP 400 at OpenAI
    assert roles(ours.get()) == ["user", "assistant", "tool"]  # the turn stays whole


def test_buffer_drops_the_system_prompt_chatkeep_pins_it(ck: chatkeep.Store) -> None:
    history = [ChatMessage(role="system", content="You are a pirate.")]
    for i in range(40):
        history.append(ChatMessage(role="user", content=f"question {i} " + "word " * 20))
        history.append(ChatMessage(role="assistant", content=f"answer {i} " + "word " * 20))
    buffer, ours = both(ck, "k", history, limit=300)
    assert "system" not in roles(buffer.get())
    got = ours.get()
    assert got[0].content == "You are a pirate." and roles(got).count("system") == 1
    assert roles(got)[1] == "user" and got[-1].content.startswith("answer 39")


def test_buffer_ignores_tool_call_arguments_chatkeep_counts_them(ck: chatkeep.Store) -> None:
    history = [
        ChatMessage(role="user", content="Search for it."),
        ChatMessage(role="assistant", content=None, additional_kwargs={"tool_calls": [CALL]}),
        ChatMessage(role="tool", content="found", additional_kwargs={"tool_call_id": "call_1"}),
        ChatMessage(role="assistant", content="Here it is."),
        ChatMessage(role="user", content="Thanks, and now?"),
    ]
    buffer, ours = both(ck, "k", history, limit=500)
    # the buffer sees "None" for the 1,500-word arguments and returns everything
    assert len(buffer.get()) == 5
    window = ck.window("k", 500)
    assert window.tokens > 0 and not window.over_budget
    assert roles(ours.get()) == ["user"] and window.tokens <= 500


def test_simple_chat_store_persist_truncates_chatkeep_keeps(
    ck: chatkeep.Store, tmp_path: Path
) -> None:
    # chatkeep: a ChatMemoryBuffer over ChatKeepChatStore serializes (by URL) and reloads
    cs = ChatKeepChatStore(ck)
    cs.add_message("k", ChatMessage(role="user", content="keep me"))
    data = ChatMemoryBuffer.from_defaults(chat_store=cs, chat_store_key="k").to_dict()
    assert [m.content for m in ChatMemoryBuffer.from_dict(data).get_all()] == ["keep me"]

    # the peer: a saved file, then persist() again with one more message
    path = tmp_path / "chat_store.json"
    path.write_text('{"store": {"k": [{"role": "user", "blocks": []}]}}')
    peer = SimpleChatStore()
    peer.add_message("k", ChatMessage(role="user", content="keep me"))
    try:
        peer.persist(str(path))
    except Exception as exc:
        assert path.stat().st_size == 0, "persist() raised but left the file alone"
        assert "serializ" in str(exc).lower()
    else:
        pytest.skip(f"SimpleChatStore.persist() works with {VERSIONS}")
    with pytest.raises(Exception, match=r"(?i)serializ"):
        ChatMemoryBuffer.from_defaults(chat_store=peer, chat_store_key="k").to_dict()


def test_sqlite_chat_store_set_messages_appends_chatkeep_replaces(
    ck: chatkeep.Store, tmp_path: Path
) -> None:
    sqlite_mod = pytest.importorskip("llama_index.storage.chat_store.sqlite")
    peer = sqlite_mod.SQLiteChatStore.from_uri(f"sqlite:///{tmp_path}/peer.db")
    history = [ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="yo")]
    for store in (peer, ChatKeepChatStore(ck)):
        for _ in range(3):  # e.g. an app passing chat_history= on every request
            ChatMemoryBuffer.from_defaults(
                chat_history=history, chat_store=store, chat_store_key="k"
            )
    assert len(peer.get_messages("k")) == 6  # appended, twice over
    assert ChatKeepChatStore(ck).get_messages("k") == history


def test_delete_message_means_one_thing(ck: chatkeep.Store, tmp_path: Path) -> None:
    async def sql_store_delete() -> ChatMessage | None:
        sql = SQLAlchemyChatStore(
            table_name="m", async_database_uri=f"sqlite+aiosqlite:///{tmp_path}/sql.db"
        )
        await sql.add_messages("a", [ChatMessage(content="a0"), ChatMessage(content="a1")])
        await sql.add_messages("b", [ChatMessage(content="b0"), ChatMessage(content="b1")])
        return await sql.delete_message("b", 0)  # a row id there: no row 0

    simple = SimpleChatStore()
    simple.set_messages("b", [ChatMessage(content="b0"), ChatMessage(content="b1")])
    assert simple.delete_message("b", 0).content == "b0"  # type: ignore[union-attr]
    assert asyncio.run(sql_store_delete()) is None  # the two peers disagree

    ours = ChatKeepChatStore(ck)
    ours.set_messages("b", [ChatMessage(content="b0"), ChatMessage(content="b1")])
    assert ours.delete_message("b", 0).content == "b0"  # type: ignore[union-attr]

    async def db_delete() -> ChatMessage | None:
        db = ChatKeepDBChatStore(ck)
        await db.set_messages("c", [ChatMessage(content="c0"), ChatMessage(content="c1")])
        return await db.delete_message("c", 0)

    assert asyncio.run(db_delete()).content == "c0"  # type: ignore[union-attr]


# -- Memory's flush: two flushers on one session --------------------------------------------
class Recorder(BaseMemoryBlock[str]):
    """A memory block that records what the flush delivers to it."""

    got: ClassVar[list[str]] = []

    async def _aget(self, messages: list[ChatMessage] | None = None, **kw: Any) -> str:
        return ""

    async def _aput(self, messages: list[ChatMessage]) -> None:
        type(self).got.extend(str(m.content) for m in messages)


class _Rendezvous:
    """Each reader of the active queue waits (up to 0.5 s) until a second reader arrives:
    two processes reading the queue at the same moment, made deterministic."""

    readers = 0
    arrived: asyncio.Event | None = None

    @classmethod
    async def meet(cls) -> None:
        assert cls.arrived is not None
        cls.readers += 1
        if cls.readers >= 2:
            cls.arrived.set()
            return
        try:
            await asyncio.wait_for(cls.arrived.wait(), timeout=0.5)
        except asyncio.TimeoutError:
            pass  # the other flusher is queued behind a lease: nobody else is reading


class RacySQL(SQLAlchemyChatStore):
    async def get_messages(self, key: str, status: Any = MessageStatus.ACTIVE, **kw: Any) -> Any:
        out = await super().get_messages(key, status=status, **kw)
        if status == MessageStatus.ACTIVE:
            await _Rendezvous.meet()
        return out


class RacyChatKeep(ChatKeepDBChatStore):
    async def get_messages(self, key: str, status: Any = MessageStatus.ACTIVE, **kw: Any) -> Any:
        out = await super().get_messages(key, status=status, **kw)
        if status == MessageStatus.ACTIVE:
            await _Rendezvous.meet()
        return out


def _flush_twice(make_memory: Any, store: Any) -> tuple[Counter[str], Counter[str]]:
    Recorder.got = []
    _Rendezvous.readers = 0
    texts = [f"m{i:02d} " + "word " * 30 for i in range(20)]

    async def go() -> tuple[Counter[str], Counter[str]]:
        _Rendezvous.arrived = asyncio.Event()
        await store.add_messages(
            "s",
            [
                ChatMessage(role="user" if i % 2 == 0 else "assistant", content=t)
                for i, t in enumerate(texts)
            ],
        )
        a, b = make_memory(), make_memory()
        await asyncio.gather(a._manage_queue(), b._manage_queue())
        archived = await store.get_messages("s", status=MessageStatus.ARCHIVED)
        return Counter(Recorder.got), Counter(str(m.content) for m in archived)

    return asyncio.run(go())


def test_memory_flush_race_delivers_twice_or_never_chatkeep_exactly_once(
    ck: chatkeep.Store, tmp_path: Path
) -> None:
    kw: dict[str, Any] = {"token_limit": 400, "token_flush_size": 100}
    peer_store = RacySQL(table_name="m", async_database_uri=f"sqlite+aiosqlite:///{tmp_path}/m.db")
    delivered, archived = _flush_twice(
        lambda: Memory.from_defaults(
            session_id="s", chat_store=peer_store, memory_blocks=[Recorder(name="r")], **kw
        ),
        peer_store,
    )
    assert delivered != archived  # some delivered twice, others archived and never delivered
    assert any(n > 1 for n in delivered.values())

    ours = RacyChatKeep(ck)
    delivered, archived = _flush_twice(
        lambda: DurableMemory.from_defaults(
            session_id="s", chat_store=ours, memory_blocks=[Recorder(name="r")], **kw
        ),
        ours,
    )
    assert archived and delivered == archived and max(delivered.values()) == 1


def test_default_engine_memory_starts_empty_every_time_chatkeep_continues(
    ck: chatkeep.Store,
) -> None:
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM

    index = VectorStoreIndex.from_documents(
        [Document(text="x")], embed_model=MockEmbedding(embed_dim=8)
    )
    # LlamaIndex's default: Memory over an in-memory SQLite with a random session id
    index.as_chat_engine(chat_mode="simple", llm=MockLLM()).chat("My name is Ada.")
    second = index.as_chat_engine(chat_mode="simple", llm=MockLLM())
    assert "Ada" not in second.chat("What is my name?").response

    def engine() -> Any:  # the same per-request construction, with chatkeep
        memory = ChatKeepMemory.from_defaults(session_id="ada", store=ck)
        return index.as_chat_engine(chat_mode="simple", llm=MockLLM(), memory=memory)

    engine().chat("My name is Ada.")
    assert "My name is Ada." in engine().chat("What is my name?").response
