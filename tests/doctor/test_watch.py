"""The runtime watch on a real FastAPI app (TestClient) with real framework objects."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import chatkeep
from chatkeep.doctor import (
    HistoryShrankWarning,
    MemoryRecreatedWarning,
    MemoryWatchWarning,
    WatchMiddleware,
    awatch,
    watch,
)
from chatkeep.doctor import watcher as watch_module


@pytest.fixture(autouse=True)
def fresh_registry() -> Iterator[None]:
    watch_module.reset()
    yield
    watch_module.reset()


def client_for(app: FastAPI) -> TestClient:
    app.add_middleware(WatchMiddleware)
    return TestClient(app)


def no_watch_warnings(client: TestClient, path: str, times: int) -> list[int]:
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        counts = [client.post(path, params={"text": f"m{i}"}).json()["n"] for i in range(times)]
    assert [w for w in seen if issubclass(w.category, MemoryWatchWarning)] == []
    return counts


def test_llamaindex_memory_per_request_warns(caplog: pytest.LogCaptureFixture) -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.core.memory import ChatMemoryBuffer

    app = FastAPI()

    @app.post("/chat/{user}")
    def chat(user: str, text: str) -> dict[str, int]:
        memory = watch(ChatMemoryBuffer.from_defaults(chat_store_key=user))
        memory.put(ChatMessage(role="user", content=text))
        return {"n": len(memory.get_all())}

    client = client_for(app)
    caplog.set_level(logging.INFO, logger="chatkeep.doctor")
    assert client.post("/chat/ada", params={"text": "hi"}).json() == {"n": 1}
    with pytest.warns(MemoryWatchWarning) as rec:
        assert client.post("/chat/ada", params={"text": "again"}).json() == {"n": 1}
    assert {w.category for w in rec} == {HistoryShrankWarning, MemoryRecreatedWarning}
    assert "'ada': history shrank from 1 to 0" in str(rec[0].message)
    logs = [r.getMessage() for r in caplog.records]
    assert any(f"pid={os.getpid()}" in m and "object=ChatMemoryBuffer" in m for m in logs)
    ends = [m for m in logs if "end of request" in m]
    assert len(ends) == 2 and all("messages=1" in m for m in ends)


def test_module_level_memory_does_not_warn() -> None:
    from llama_index.core.llms import ChatMessage
    from llama_index.core.memory import ChatMemoryBuffer

    app = FastAPI()
    memory = ChatMemoryBuffer.from_defaults(token_limit=100_000)

    @app.post("/chat")
    def chat(text: str) -> dict[str, int]:
        watch(memory, key="ada")
        memory.put(ChatMessage(role="user", content=text))
        return {"n": len(memory.get_all())}

    assert no_watch_warnings(client_for(app), "/chat", 4) == [1, 2, 3, 4]


def test_chatkeep_memory_per_request_over_sqlite_does_not_warn(tmp_path: Path) -> None:
    app = FastAPI()
    store = chatkeep.open_store(f"sqlite:///{tmp_path}/w.db")

    @app.post("/chat")
    def chat(text: str) -> dict[str, int]:
        memory = watch(chatkeep.Memory("ada", store=store))  # a new view every request
        with memory.turn(text) as turn:
            turn.reply("ok")
        return {"n": len(memory.history())}

    try:
        assert no_watch_warnings(client_for(app), "/chat", 3) == [2, 4, 6]
    finally:
        store.close()


def test_langchain_history_per_request_warns() -> None:
    from langchain_core.chat_history import InMemoryChatMessageHistory

    app = FastAPI()

    @app.post("/lc")
    def lc(text: str) -> dict[str, int]:
        history = watch(InMemoryChatMessageHistory(), key="lc-user")
        history.add_user_message(text)
        return {"n": len(history.messages)}

    client = client_for(app)
    client.post("/lc", params={"text": "one"})
    with pytest.warns(MemoryWatchWarning) as rec:
        client.post("/lc", params={"text": "two"})
    assert {w.category for w in rec} == {HistoryShrankWarning, MemoryRecreatedWarning}
    assert all("'lc-user'" in str(w.message) for w in rec)


AGENTS_APP = """
import sys, warnings
from agents import SQLiteSession
from fastapi import FastAPI
from fastapi.testclient import TestClient
from chatkeep.doctor import MemoryWatchWarning, WatchMiddleware, awatch

app = FastAPI()
app.add_middleware(WatchMiddleware)

@app.post("/agents")
async def agents_chat(text: str, db: str = ":memory:"):
    session = await awatch(SQLiteSession("ag-user", db))
    await session.add_items([{"role": "user", "content": text}])
    return {"n": len(await session.get_items())}

client = TestClient(app)
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    durable = [client.post("/agents", params={"text": t, "db": sys.argv[1]}).json()["n"]
               for t in "abc"]
print("durable", durable, sorted({w.category.__name__ for w in seen
                                  if issubclass(w.category, MemoryWatchWarning)}))
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    default = [client.post("/agents", params={"text": t}).json()["n"] for t in "abc"]
print("default", default, sorted({w.category.__name__ for w in seen
                                  if issubclass(w.category, MemoryWatchWarning)}))
"""


def test_agents_sessions_via_awatch(tmp_path: Path) -> None:
    # a subprocess: importing `agents` imports uvicorn, which would make every later
    # memory:// store in this test process warn that it runs under a server
    out = subprocess.run(
        [sys.executable, "-c", AGENTS_APP, str(tmp_path / "agents.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # a new session object per request over a file: nothing forgotten, no warning
    assert "durable [1, 2, 3] []" in lines
    # the ':memory:' default: every request starts empty and the watch says so
    assert "default [1, 1, 1] ['HistoryShrankWarning', 'MemoryRecreatedWarning']" in lines


def test_watch_returns_the_object_and_counts_plain_lists() -> None:
    history: list[str] = []
    assert watch(history, key="k") is history
    history.extend(["a", "b"])
    with pytest.warns(MemoryWatchWarning) as rec:
        watch([], key="k")
    assert any("from 2 to 0" in str(w.message) for w in rec)


def test_importing_the_doctor_loads_no_framework() -> None:
    code = "import sys, json, chatkeep.doctor; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = {m.split(".")[0] for m in __import__("json").loads(out.stdout)}
    frameworks = {"fastapi", "starlette", "llama_index", "langchain_core", "agents", "streamlit"}
    assert loaded & (frameworks | {"typer", "rich", "pydantic"}) == set()


def test_awatch_counts_llamaindex_memory_without_blocking_the_loop() -> None:
    import asyncio

    from llama_index.core.llms import ChatMessage
    from llama_index.core.memory import Memory

    async def scenario() -> None:
        first = await awatch(Memory.from_defaults(session_id="li-async"))
        await first.aput(ChatMessage(role="user", content="hi"))
        second = Memory.from_defaults(session_id="li-async")  # a fresh in-memory SQLite
        with pytest.warns(MemoryWatchWarning) as rec:
            await awatch(second)
        assert "history shrank from 1 to 0" in str(rec[0].message)

    asyncio.run(scenario())
