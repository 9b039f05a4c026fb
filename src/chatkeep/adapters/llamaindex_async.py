"""The native-async path of :class:`~chatkeep.adapters.llamaindex.ChatKeepChatStore`: its
``a*`` methods over a :class:`chatkeep.AsyncStore` (no worker threads), with the same
meanings, the same session lease and the same atomic ``replace`` as the sync methods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from chatkeep.errors import InvalidInput, MissingDependency

try:
    from llama_index.core.base.llms.types import ChatMessage
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        "the LlamaIndex adapter needs llama-index-core: pip install 'chatkeep[llamaindex]'"
    ) from exc

from chatkeep.adapters.llamaindex_convert import from_chatkeep, to_chatkeep
from chatkeep.memory import AsyncMemory
from chatkeep.store import AsyncStore
from chatkeep.types import Message, StoredMessage
from chatkeep.validation import check_session_id


class AsyncOnly:
    """Stands in for the sync store of a chat store built over an ``AsyncStore``: any sync
    call says what to do instead of failing obscurely."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends probe dunders
            raise AttributeError(name)
        raise InvalidInput(
            "this ChatKeepChatStore wraps a chatkeep AsyncStore: call its async methods "
            "(aget_messages, aset_messages, async_add_message, ...), or build it from a Store "
            "or a URL for sync use"
        )


class AsyncChatOps:
    """The chat-store operations over an ``AsyncStore`` (one per ChatKeepChatStore)."""

    def __init__(self, store: AsyncStore, *, ttl: float, timeout: float, held: Any) -> None:
        self.store = store
        self.ttl = ttl
        self.timeout = timeout
        self._held = held  # the re-entrancy marks shared with the sync lease

    @asynccontextmanager
    async def lease(self, key: str) -> AsyncIterator[None]:
        mark = (id(self.store._root), self.store.tenant, key)
        if mark in self._held.get():
            yield
            return
        memory = AsyncMemory(key, store=self.store, lease_ttl=self.ttl, lease_timeout=self.timeout)
        lease = await memory._acquire()
        reset = self._held.set(self._held.get() | {mark})
        try:
            yield
        finally:
            self._held.reset(reset)
            await self.store.release_lease(key, lease.token)

    async def get_messages(self, key: str) -> list[ChatMessage]:
        return [from_chatkeep(m) for m in await self.store.read(key)]

    async def get_keys(self) -> list[str]:
        return [s.session_id async for s in self.store.iter_sessions()]

    async def set_messages(self, key: str, batch: list[Message]) -> None:
        check_session_id(key)
        async with self.lease(key):
            await self.store.replace(key, batch)

    async def add_message(self, key: str, message: ChatMessage, idx: int | None) -> None:
        check_session_id(key)
        msg = to_chatkeep(message)
        async with self.lease(key):
            if idx is None:
                await self.store.append(key, msg)
                return
            current = [m.message() for m in await self.store.read(key)]
            current.insert(idx, msg)
            await self.store.replace(key, current)

    async def add_messages(self, key: str, batch: list[Message]) -> None:
        check_session_id(key)
        if batch:
            async with self.lease(key):
                await self.store.append(key, batch)

    async def delete_messages(self, key: str) -> list[ChatMessage] | None:
        check_session_id(key)
        async with self.lease(key):
            if await self.store.info(key) is None:
                return None
            gone = await self.store.read(key)
            await self.store.delete(key)
        return [from_chatkeep(m) for m in gone]

    async def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        check_session_id(key)
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise InvalidInput(f"idx must be a list position (an int), got {idx!r}")
        async with self.lease(key):
            current: list[StoredMessage] = await self.store.read(key)
            n = len(current)
            if not -n <= idx < n:
                return None
            pos = idx % n
            if pos == n - 1:  # the newest: one atomic pop
                popped = await self.store.pop(key)
                return from_chatkeep(popped) if popped is not None else None
            gone = current.pop(pos)
            await self.store.replace(key, [m.message() for m in current])
        return from_chatkeep(gone)

    async def delete_last_message(self, key: str) -> ChatMessage | None:
        check_session_id(key)
        popped = await self.store.pop(key)
        return from_chatkeep(popped) if popped is not None else None
