"""The package's shape: light import, exact public API, twin parity."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import chatkeep
from chatkeep import AsyncStore, Store
from chatkeep.stores.base import PRIMITIVES, AsyncBackend, Backend
from chatkeep.stores.memory import MemoryBackend
from chatkeep.stores.sqlite import SQLiteBackend
from chatkeep.stores.threaded import ThreadedAsyncBackend

OPTIONAL = (
    "typer",
    "rich",
    "click",
    "fastapi",
    "uvicorn",
    "psycopg",
    "redis",
    "llama_index",
    "langchain_core",
    "agents",
    "openai",
    "tiktoken",
    "pydantic",
    "starlette",
)


def test_import_chatkeep_loads_no_optional_dependency() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, json, chatkeep; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(out.stdout))
    heavy = sorted(m for m in loaded if m.split(".")[0] in OPTIONAL)
    assert heavy == []


def test_all_is_exact_and_sorted() -> None:
    public = {
        n for n, v in vars(chatkeep).items() if not n.startswith("_") and not inspect.ismodule(v)
    }
    assert set(chatkeep.__all__) == public | {"__version__"}
    assert chatkeep.__all__ == sorted(chatkeep.__all__)


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")}


def test_sync_and_async_twins_match() -> None:
    assert _public(Store) == _public(AsyncStore)
    for name in _public(AsyncStore):
        sync_attr, async_attr = getattr(Store, name), getattr(AsyncStore, name)
        if callable(sync_attr) and name not in ("with_tenant", "count_tokens", "iter_sessions"):
            assert inspect.iscoroutinefunction(async_attr), name
            assert not inspect.iscoroutinefunction(sync_attr), name
    assert _public(chatkeep.Memory) - {"turn"} == _public(chatkeep.AsyncMemory) - {"turn"}


def test_every_backend_implements_every_primitive() -> None:
    for proto in (Backend, AsyncBackend):
        declared = {n for n in vars(proto) if not n.startswith("_")}
        assert set(PRIMITIVES) <= declared
    for cls in (MemoryBackend, SQLiteBackend, ThreadedAsyncBackend):
        for name in (*PRIMITIVES, "open", "close", "bind_tokenizer"):
            assert callable(getattr(cls, name)), (cls, name)
    from chatkeep.stores.file import FileBackend

    for name in (*PRIMITIVES, "open", "close", "bind_tokenizer"):
        assert callable(getattr(FileBackend, name)), name
    for name in PRIMITIVES:
        assert inspect.iscoroutinefunction(getattr(ThreadedAsyncBackend, name)), name
