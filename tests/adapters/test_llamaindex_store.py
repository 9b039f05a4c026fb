"""ChatKeepChatStore and ChatKeepDBChatStore: every operation, one meaning, on every backend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.llms import ChatMessage
from llama_index.core.memory import ChatMemoryBuffer, ChatSummaryMemoryBuffer
from llama_index.core.storage.chat_store.base_db import MessageStatus

import chatkeep
from chatkeep import InvalidInput, InvalidSessionId
from chatkeep.adapters.llamaindex import ChatKeepChatStore, ChatKeepMemory
from chatkeep.adapters.llamaindex_db import ChatKeepDBChatStore


@pytest.fixture
def ck(url: str) -> Iterator[chatkeep.Store]:
    store = chatkeep.open_store(url)
    yield store
    store.close()


def msgs(*texts: str) -> list[ChatMessage]:
    return [
        ChatMessage(role="user" if i % 2 == 0 else "assistant", content=t)
        for i, t in enumerate(texts)
    ]


def texts(messages: list[ChatMessage] | None) -> list[str | None]:
    assert messages is not None
    return [m.content for m in messages]


def test_set_messages_replaces_never_appends(ck: chatkeep.Store) -> None:
    cs = ChatKeepChatStore(ck)
    cs.set_messages("k", msgs("a", "b", "c"))
    cs.set_messages("k", msgs("x", "y"))
    assert texts(cs.get_messages("k")) == ["x", "y"]
    # ChatMemoryBuffer.from_defaults(chat_history=...) calls set_messages on every build:
    for _ in range(3):
        ChatMemoryBuffer.from_defaults(
            chat_history=msgs("h1", "h2"), chat_store=cs, chat_store_key="k"
        )
    assert texts(cs.get_messages("k")) == ["h1", "h2"]
    cs.set_messages("k", [])
    assert cs.get_messages("k") == []


def test_add_and_positions(ck: chatkeep.Store) -> None:
    cs = ChatKeepChatStore(ck)
    for m in msgs("m0", "m1", "m2", "m3", "m4"):
        cs.add_message("k", m)
    assert texts(cs.get_messages("k")) == ["m0", "m1", "m2", "m3", "m4"]
    gone = cs.delete_message("k", 1)  # a list position, as list.pop(1)
    assert gone is not None and gone.content == "m1"
    assert texts(cs.get_messages("k")) == ["m0", "m2", "m3", "m4"]
    gone = cs.delete_message("k", -1)
    assert gone is not None and gone.content == "m4"
    assert cs.delete_message("k", 3) is None and cs.delete_message("k", -4) is None
    cs.add_message("k", ChatMessage(role="user", content="ins"), idx=1)
    assert texts(cs.get_messages("k")) == ["m0", "ins", "m2", "m3"]
    last = cs.delete_last_message("k")
    assert last is not None and last.content == "m3"
    assert texts(cs.delete_messages("k")) == ["m0", "ins", "m2"]
    assert cs.get_messages("k") == [] and cs.delete_messages("k") is None
    assert cs.delete_last_message("k") is None and cs.delete_message("k", 0) is None
    assert "k" not in cs.get_keys()


def test_get_keys_lists_only_this_tenant(ck: chatkeep.Store) -> None:
    mine = ChatKeepChatStore(ck, tenant="acme")
    theirs = ChatKeepChatStore(ck, tenant="globex")
    mine.add_message("alice", msgs("hi")[0])
    theirs.add_message("bob", msgs("hi")[0])
    assert mine.get_keys() == ["alice"] and theirs.get_keys() == ["bob"]
    assert mine.get_messages("bob") == []


def test_bad_input_stores_nothing(ck: chatkeep.Store) -> None:
    cs = ChatKeepChatStore(ck)
    cs.set_messages("k", msgs("keep"))
    with pytest.raises(InvalidInput):
        cs.set_messages("k", [msgs("ok")[0], "not a message"])  # type: ignore[list-item]
    with pytest.raises(InvalidSessionId):
        cs.add_message("", msgs("x")[0])
    with pytest.raises(InvalidInput):
        cs.delete_message("k", "0")  # type: ignore[arg-type]
    assert texts(cs.get_messages("k")) == ["keep"]


def test_async_twins(ck: chatkeep.Store) -> None:
    cs = ChatKeepChatStore(ck)

    async def go() -> list[Any]:
        await cs.aset_messages("k", msgs("a", "b", "c"))
        await cs.async_add_message("k", msgs("d")[0])
        out: list[Any] = [texts(await cs.aget_messages("k"))]
        out.append((await cs.adelete_message("k", 0)).content)  # type: ignore[union-attr]
        out.append((await cs.adelete_last_message("k")).content)  # type: ignore[union-attr]
        out.append(await cs.aget_keys())
        out.append(texts(await cs.adelete_messages("k")))
        return out

    assert asyncio.run(go()) == [["a", "b", "c", "d"], "a", "d", ["k"], ["b", "c"]]


def test_memory_buffers_persist_through_new_objects(ck: chatkeep.Store) -> None:
    def buffer() -> ChatMemoryBuffer:  # what an app builds per request
        return ChatMemoryBuffer.from_defaults(
            chat_store=ChatKeepChatStore(ck), chat_store_key="user-1", token_limit=3000
        )

    buffer().put(ChatMessage(role="user", content="My name is Ada."))
    buffer().put(ChatMessage(role="assistant", content="Hello Ada."))
    assert texts(buffer().get()) == ["My name is Ada.", "Hello Ada."]
    summary = ChatSummaryMemoryBuffer.from_defaults(
        chat_store=ChatKeepChatStore(ck), chat_store_key="user-1", token_limit=3000
    )
    assert texts(summary.get()) == ["My name is Ada.", "Hello Ada."]
    # to_dict() / from_dict() reference the store by URL and round-trip
    data = buffer().to_dict()
    assert data["chat_store"]["url"] == ck.url and "store" not in data["chat_store"]
    assert texts(ChatMemoryBuffer.from_dict(data).get()) == ["My name is Ada.", "Hello Ada."]


def test_chatkeep_memory_to_dict_round_trip(ck: chatkeep.Store) -> None:
    mem = ChatKeepMemory.from_defaults(session_id="s", store=ck, token_limit=500)
    mem.put_messages(msgs("q1", "a1"))
    data = mem.to_dict()
    assert data["chat_store"] == {
        "url": ck.url,
        "tenant": "default",
        "lease_ttl": 30.0,
        "lease_timeout": 60.0,
        "class_name": "ChatKeepChatStore",
    }
    back = ChatKeepMemory.from_dict(data)
    assert (back.session_id, back.token_limit) == ("s", 500)
    assert texts(back.get()) == ["q1", "a1"]
    assert texts(ChatKeepMemory.from_string(mem.to_string()).get_all()) == ["q1", "a1"]


def test_db_chat_store_statuses(ck: chatkeep.Store) -> None:
    db = ChatKeepDBChatStore(ck)
    archived = MessageStatus.ARCHIVED

    async def go() -> None:
        await db.add_messages("k", msgs("m0", "m1", "m2", "m3"))
        assert await db.count_messages("k") == 4
        assert texts(await db.archive_oldest_messages("k", 2)) == ["m0", "m1"]
        assert texts(await db.get_messages("k")) == ["m2", "m3"]
        assert texts(await db.get_messages("k", status=archived)) == ["m0", "m1"]
        assert texts(await db.get_messages("k", status=None, offset=1, limit=2)) == ["m1", "m2"]
        await db.add_message("k", msgs("old")[0], status=archived)
        assert await db.count_messages("k", status=archived) == 3
        assert texts(await db.delete_oldest_messages("k", 1)) == ["m2"]
        assert texts(await db.get_messages("k", status=None)) == ["m0", "m1", "m3", "old"]
        assert texts(await db.get_messages("k", status=archived)) == ["m0", "m1", "old"]
        gone = await db.delete_message("k", 0)  # a position in the whole list
        assert gone is not None and gone.content == "m0"
        assert texts(await db.get_messages("k", status=archived)) == ["m1", "old"]
        await db.delete_messages("k", status=archived)
        assert texts(await db.get_messages("k", status=None)) == ["m3"]
        await db.set_messages("k", msgs("n0", "n1"))
        assert texts(await db.get_messages("k")) == ["n0", "n1"]
        assert await db.get_keys() == ["k"]
        await db.delete_messages("k")
        assert await db.get_keys() == []

    asyncio.run(go())


def test_archive_mark_is_ignored_after_someone_else_clears(ck: chatkeep.Store) -> None:
    db = ChatKeepDBChatStore(ck)

    async def go() -> None:
        await db.add_messages("k", msgs("a", "b", "c"))
        await db.archive_oldest_messages("k", 2)
        ck.clear("k")  # e.g. the CLI or chatkeep.Memory.clear()
        await db.add_messages("k", msgs("new1", "new2"))
        assert texts(await db.get_messages("k")) == ["new1", "new2"]

    asyncio.run(go())


def test_memory_needs_a_session_and_a_chatkeep_store(ck: chatkeep.Store) -> None:
    with pytest.raises(InvalidInput, match="session_id"):
        ChatKeepMemory.from_defaults(store=ck)
    with pytest.raises(InvalidInput, match="unexpected"):
        ChatKeepMemory.from_defaults(session_id="s", store=ck, tokenizer_fn=len)
    with pytest.raises(InvalidInput, match="Store or a store URL"):
        ChatKeepChatStore(object())  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="ChatKeepChatStore"):
        ChatKeepMemory(token_limit=10).get()
    mem = ChatKeepMemory.from_defaults(session_id="s", store=ck, token_limit=50)
    mem.put(ChatMessage(role="user", content="hi"))
    with pytest.raises(ValueError, match="exceeds"):
        mem.get(initial_token_count=51)  # as ChatMemoryBuffer


def test_missing_llama_index_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'llama_index':\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import chatkeep\n"
        "for mod in ('chatkeep.adapters.llamaindex', 'chatkeep.adapters.llamaindex_db'):\n"
        "    try:\n"
        "        __import__(mod)\n"
        "    except chatkeep.MissingDependency as exc:\n"
        "        print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all("pip install 'chatkeep[llamaindex]'" in ln for ln in lines)


def test_summary_buffer_rewrites_through_the_store(ck: chatkeep.Store) -> None:
    from llama_index.core.llms import MockLLM

    def summary_buffer() -> ChatSummaryMemoryBuffer:  # per request
        return ChatSummaryMemoryBuffer.from_defaults(
            llm=MockLLM(max_tokens=8),
            chat_store=ChatKeepChatStore(ck),
            chat_store_key="u",
            token_limit=100,
        )

    for i in range(10):
        summary_buffer().put(ChatMessage(role="user", content=f"question {i} " + "word " * 10))
        summary_buffer().put(ChatMessage(role="assistant", content=f"answer {i} " + "word " * 10))
    got = summary_buffer().get()  # summarizes the oldest and replaces them in the store
    assert got[0].role.value == "system" and got[-1].content.startswith("answer 9")
    assert summary_buffer().get_all() == got
    rows = ck.read("u")
    assert rows[0].role == "system" and len(rows) == len(got) < 20


def test_async_methods_waiting_on_a_lease_leave_the_loop_free(ck: chatkeep.Store) -> None:
    cs = ChatKeepChatStore(ck)

    async def main() -> list[str]:
        events: list[str] = []
        lease = ck.acquire_lease("k", owner="another-process", ttl=30)
        assert lease is not None
        write = asyncio.create_task(cs.aset_messages("k", msgs("after the lease")))
        for _ in range(5):
            await asyncio.sleep(0.01)
        events.append("other request served")
        assert not write.done()  # queued behind the lease, in a worker thread
        ck.release_lease("k", lease.token)
        events.append("lease released")
        await write
        events.append(f"stored {texts(await cs.aget_messages('k'))}")
        return events

    assert asyncio.run(main()) == [
        "other request served",
        "lease released",
        "stored ['after the lease']",
    ]
