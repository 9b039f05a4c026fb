"""LlamaIndex's own chat engines drive chatkeep; a brand-new Python process continues.

Offline: a tiny VectorStoreIndex over MockEmbedding, and MockLLM, which answers with the prompt
it was given, so a reply shows exactly which earlier turns the engine put in front of the LLM.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.storage.chat_store.base_db import MessageStatus

import chatkeep
from chatkeep.adapters.llamaindex_db import ChatKeepDBChatStore

MODES = ("simple", "context", "condense_question", "condense_plus_context")

#: Shared by this process and the subprocess: build the app's objects *per request*.
APP = textwrap.dedent(
    """
    import chatkeep
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import MockEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.memory import ChatMemoryBuffer
    from chatkeep.adapters.llamaindex import ChatKeepChatStore, ChatKeepMemory
    from chatkeep.adapters.llamaindex_db import DurableMemory

    INDEX = VectorStoreIndex.from_documents(
        [Document(text="Oslo is the capital of Norway.")],
        embed_model=MockEmbedding(embed_dim=8),
    )

    def memory(kind, session_id, store):
        if kind == "chatkeep":
            return ChatKeepMemory.from_defaults(
                session_id=session_id, store=store, token_limit=3000
            )
        if kind == "buffer":
            return ChatMemoryBuffer.from_defaults(
                chat_store=ChatKeepChatStore(store), chat_store_key=session_id, token_limit=3000
            )
        return DurableMemory.from_defaults(session_id=session_id, store=store, token_limit=30000)

    def chat(store, mode, kind, text):
        session_id = f"{mode}-{kind}"
        engine = INDEX.as_chat_engine(
            chat_mode=mode, llm=MockLLM(), memory=memory(kind, session_id, store)
        )
        return engine.chat(text).response
    """
)
KINDS = ("chatkeep", "buffer", "durable")


def test_every_chat_mode_continues_in_a_new_process(url: str, tmp_path: Path) -> None:
    store = chatkeep.open_store(url)
    if store._backend.ephemeral:
        store.close()
        pytest.skip("an in-process store cannot be shared with another process")
    namespace: dict[str, object] = {}
    exec(APP, namespace)
    chat = namespace["chat"]
    for mode in MODES:
        for kind in KINDS:
            chat(store, mode, kind, "My name is Ada.")  # type: ignore[operator]
            chat(store, mode, kind, "I live in Oslo.")  # type: ignore[operator]
    memory = namespace["memory"]
    dumped = {  # serialized here, rebuilt in the new process: by URL, never a connection
        kind: memory(kind, f"simple-{kind}", store).to_json()  # type: ignore[operator]
        for kind in ("chatkeep", "buffer")
    }
    store.close()

    script = APP + textwrap.dedent(
        """
        import json, sys
        out = {}
        with chatkeep.open_store(sys.argv[1]) as store:
            for mode in sys.argv[2].split(","):
                for kind in sys.argv[3].split(","):
                    reply = chat(store, mode, kind, "What is my name?")
                    rows = store.read(f"{mode}-{kind}")
                    out[f"{mode}-{kind}"] = {
                        "reply": reply,
                        "history": [[m.role, m.text] for m in rows],
                    }
        from_json = json.loads(sys.argv[4])
        out["chatkeep-from-dict"] = len(ChatKeepMemory.from_string(from_json["chatkeep"]).get_all())
        out["buffer-from-dict"] = len(ChatMemoryBuffer.from_string(from_json["buffer"]).get_all())
        print(json.dumps(out))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, url, ",".join(MODES), ",".join(KINDS), json.dumps(dumped)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    # the dicts made here rebuilt both memories there, over the same store (6 messages now)
    assert (results.pop("chatkeep-from-dict"), results.pop("buffer-from-dict")) == (6, 6)
    assert len(results) == len(MODES) * len(KINDS)
    for key, res in results.items():
        history = res["history"]
        users = [text for role, text in history if role == "user"]
        assert users == ["My name is Ada.", "I live in Oslo.", "What is my name?"], key
        assert [role for role, _ in history] == ["user", "assistant"] * 3, key
        # the new process's LLM call saw both turns of the earlier process
        assert "My name is Ada." in res["reply"] and "I live in Oslo." in res["reply"], key


FLUSHER = textwrap.dedent(
    """
    import sys
    from typing import Any
    import chatkeep
    from llama_index.core.llms import ChatMessage
    from llama_index.core.memory.memory import BaseMemoryBlock
    from chatkeep.adapters.llamaindex_db import DurableMemory

    url, name = sys.argv[1], sys.argv[2]
    store = chatkeep.open_store(url)

    class Deliveries(BaseMemoryBlock[str]):
        async def _aget(self, messages: Any = None, **kw: Any) -> str:
            return ""

        async def _aput(self, messages: list[ChatMessage]) -> None:
            store.append("deliveries", [chatkeep.Message.user(str(m.content)) for m in messages])

    for i in range(12):
        memory = DurableMemory.from_defaults(  # per request, as an app would
            session_id="shared",
            store=store,
            token_limit=300,
            token_flush_size=60,
            memory_blocks=[Deliveries(name="d")],
        )
        role = "user" if i % 2 == 0 else "assistant"
        memory.put(ChatMessage(role=role, content=f"{name}-{i:02d} " + "word " * 12))
    store.close()
    """
)


@pytest.mark.slow
def test_memory_flush_is_exactly_once_across_processes(url: str, tmp_path: Path) -> None:
    store = chatkeep.open_store(url)
    if store._backend.ephemeral:
        store.close()
        pytest.skip("an in-process store cannot be shared with another process")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FLUSHER, url, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for name in ("a", "b")
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    db = ChatKeepDBChatStore(store)

    async def archived() -> list[str]:
        rows = await db.get_messages("shared", status=MessageStatus.ARCHIVED)
        return [str(m.content) for m in rows]

    gone = asyncio.run(archived())
    delivered = [m.text for m in store.read("deliveries")]
    assert len(store.read("shared")) == 24
    store.close()
    assert gone  # the flush ran
    assert Counter(delivered) == Counter(gone)  # every archived message, exactly once


WRITER = textwrap.dedent(
    """
    import sys, json
    import chatkeep
    from llama_index.core.llms import ChatMessage
    from chatkeep.adapters.llamaindex import ChatKeepChatStore

    url, role = sys.argv[1], sys.argv[2]
    seen = []
    with chatkeep.open_store(url) as store:
        chat_store = ChatKeepChatStore(store)
        for i in range(6):
            if role == "setter":
                batch = [ChatMessage(role="user", content=f"set{i}-{j}") for j in range(4)]
                chat_store.set_messages("k", batch)
            else:  # appends, and reads while the other process replaces
                chat_store.add_message("k", ChatMessage(role="user", content=f"add{i}"))
                for _ in range(3):
                    seen.append([m.content for m in chat_store.get_messages("k")])
    print(json.dumps(seen))
    """
)


def _sets_are_whole(contents: list[str]) -> bool:
    """Every replace shows up whole: at most one set, its 4 messages in order, first."""
    sets = [c for c in contents if c.startswith("set")]
    if not sets:
        return True
    prefix = sets[0].split("-")[0]
    return sets == [f"{prefix}-{j}" for j in range(4)] and contents[:4] == sets


@pytest.mark.slow
def test_replace_is_never_mixed_across_processes(url: str, tmp_path: Path) -> None:
    store = chatkeep.open_store(url)
    if store._backend.ephemeral:
        store.close()
        pytest.skip("an in-process store cannot be shared with another process")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, role],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for role in ("setter", "adder")
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outs.append(out)
    snapshots = json.loads(outs[1])
    assert snapshots and all(_sets_are_whole(s) for s in snapshots)
    final = [m.text for m in store.read("k")]
    store.close()
    assert final[:4] == [f"set5-{j}" for j in range(4)]  # the last replace, whole
    assert _sets_are_whole(final)
    adds = [c for c in final if c.startswith("add")]
    assert adds == sorted(adds, key=lambda c: int(c[3:]))  # appends keep their order
