"""LlamaIndex's newer ``Memory`` over chatkeep: an ``AsyncDBChatStore`` and a flush-safe Memory.

``Memory.from_defaults(session_id=user_id, chat_store=ChatKeepDBChatStore(store))`` keeps the
short-term FIFO queue in chatkeep, so it survives requests, reloads, workers and restarts
(LlamaIndex's default is an in-memory SQLite with a random session id).

Statuses: ``Memory`` archives the oldest active messages when its queue is over its limit.
chatkeep keeps every message in one session, in order; a message is ``ARCHIVED`` when its seq
is at or below the session's archive mark (kept in the session's metadata under
``llamaindex_archived_through``, checked against the message id so a session cleared by
anything else never inherits a stale mark) or when it was written with ``status=ARCHIVED``
(``Message.metadata["llamaindex_status"]``). Other frameworks still see the whole session.

Flush safety: ``Memory._manage_queue`` reads the active queue, archives the oldest ``n`` and
hands the messages *it read* to its memory blocks. Two processes doing that at once archive
``2n`` messages and deliver the same ``n`` twice: some messages are delivered twice, others
never. :class:`DurableMemory` runs that whole step under the session's chatkeep lease, so
flushes on one session are serialized across threads, processes and machines; every archived
message is delivered exactly once. (If a process dies between archiving and delivering, that
batch stays stored, archived, but is not delivered: archiving comes first in LlamaIndex's
step.)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from chatkeep.errors import InvalidInput, MissingDependency

try:
    from llama_index.core.base.llms.types import ChatMessage
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.memory.memory import Memory as LlamaMemory
    from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        "the LlamaIndex adapter needs llama-index-core: pip install 'chatkeep[llamaindex]'"
    ) from exc

from chatkeep.adapters.llamaindex import _held, _resolve, lease_mark, rewrite, session_lease
from chatkeep.adapters.llamaindex_convert import from_chatkeep, to_chatkeep
from chatkeep.memory import Memory
from chatkeep.store import Store
from chatkeep.types import Message, StoredMessage
from chatkeep.validation import check_session_id

__all__ = ["ChatKeepDBChatStore", "DurableMemory"]

MARK_KEY = "llamaindex_archived_through"
STATUS_KEY = "llamaindex_status"


def _with_status(message: Message, status: MessageStatus) -> Message:
    meta = {k: v for k, v in message.metadata.items() if k != STATUS_KEY}
    if status == MessageStatus.ARCHIVED:
        meta[STATUS_KEY] = MessageStatus.ARCHIVED.value
    return dataclasses.replace(message, metadata=meta)


class ChatKeepDBChatStore(AsyncDBChatStore):
    """LlamaIndex's ``AsyncDBChatStore`` over a chatkeep store (a ``Store`` or a URL).

    ``delete_message(key, idx)`` takes a position in the key's whole list (every status),
    like :class:`~chatkeep.adapters.llamaindex.ChatKeepChatStore`; ``set_messages`` replaces;
    ``get_keys`` lists this tenant's sessions. Each coroutine runs the store calls in a worker
    thread, so the event loop never blocks.
    """

    url: str = Field(default="", description="The chatkeep store URL (without password).")
    tenant: str = Field(default="default")
    lease_ttl: float = Field(default=120.0, description="Seconds a flush may hold a session.")
    lease_timeout: float = Field(
        default=150.0, description="Seconds a flush waits for it (longer than lease_ttl)."
    )

    _store: Store = PrivateAttr()

    def __init__(
        self, store: Store | str | None = None, *, tenant: str | None = None, **data: Any
    ) -> None:
        url = data.pop("url", None)
        resolved = _resolve(store if store is not None else url, tenant or data.pop("tenant", None))
        super().__init__(url=resolved.url, tenant=resolved.tenant, **data)  # type: ignore[call-arg]
        self._store = resolved

    @classmethod
    def class_name(cls) -> str:
        return "ChatKeepDBChatStore"

    @property
    def store(self) -> Store:
        return self._store

    # -- the lease ------------------------------------------------------------------------
    @contextmanager
    def lease(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lease (re-entrant in one task or thread)."""
        with session_lease(self._store, key, ttl=self.lease_ttl, timeout=self.lease_timeout):
            yield

    @asynccontextmanager
    async def alease(self, key: str) -> AsyncIterator[None]:
        """The async form of :meth:`lease`; calls made inside it reuse the lease."""
        check_session_id(key)
        mark = lease_mark(self._store, key)
        if mark in _held.get():
            yield
            return
        memory = Memory(
            key, store=self._store, lease_ttl=self.lease_ttl, lease_timeout=self.lease_timeout
        )
        lease = await asyncio.to_thread(memory._acquire)
        reset = _held.set(_held.get() | {mark})
        try:
            yield
        finally:
            _held.reset(reset)
            await asyncio.to_thread(self._store.release_lease, key, lease.token)

    # -- statuses -------------------------------------------------------------------------
    def _mark(self, key: str) -> int:
        """The archive mark's seq, or 0 when there is none or it no longer matches."""
        info = self._store.info(key)
        mark = info.metadata.get(MARK_KEY) if info else None
        if not isinstance(mark, dict) or not isinstance(mark.get("seq"), int):
            return 0
        rows = self._store.read(key, after_seq=max(0, mark["seq"] - 1), limit=1)
        return int(mark["seq"]) if rows and rows[0].id == mark.get("id") else 0

    @staticmethod
    def _status(m: StoredMessage, mark: int) -> MessageStatus:
        if m.seq <= mark or m.metadata.get(STATUS_KEY) == MessageStatus.ARCHIVED.value:
            return MessageStatus.ARCHIVED
        return MessageStatus.ACTIVE

    def _rows(self, key: str, status: MessageStatus | None) -> list[StoredMessage]:
        mark = self._mark(key)
        if status == MessageStatus.ACTIVE:
            rows = self._store.read(key, after_seq=mark)
        else:
            rows = self._store.read(key)
        if status is None:
            return rows
        return [m for m in rows if self._status(m, mark) == status]

    def _set_mark(self, key: str, last: StoredMessage | None) -> None:
        info = self._store.info(key)
        meta = {k: v for k, v in (info.metadata if info else {}).items() if k != MARK_KEY}
        if last is not None:
            meta[MARK_KEY] = {"seq": last.seq, "id": last.id}
        if info is not None or last is not None:
            self._store.update_session(key, metadata=meta)

    def _rewrite(self, key: str, keep: list[tuple[Message, MessageStatus]]) -> None:
        """Replace the session with ``keep`` (statuses as flags) and drop the mark."""
        rewrite(self._store, key, [_with_status(m, s) for m, s in keep])
        self._set_mark(key, None)

    def _statused(self, key: str) -> list[tuple[StoredMessage, MessageStatus]]:
        mark = self._mark(key)
        return [(m, self._status(m, mark)) for m in self._store.read(key)]

    # -- sync bodies (run in a worker thread by the coroutines below) ---------------------
    def _get(
        self, key: str, status: MessageStatus | None, limit: int | None, offset: int | None
    ) -> list[ChatMessage]:
        rows = self._rows(key, status)
        start = offset or 0
        rows = rows[start : start + limit] if limit is not None else rows[start:]
        return [from_chatkeep(m) for m in rows]

    def _add(self, key: str, messages: list[ChatMessage], status: MessageStatus) -> None:
        check_session_id(key)
        batch = [_with_status(to_chatkeep(m), status) for m in messages]
        if batch:
            self._store.append(key, batch)

    def _set(self, key: str, messages: list[ChatMessage], status: MessageStatus) -> None:
        check_session_id(key)
        batch = [(to_chatkeep(m), status) for m in messages]
        with self.lease(key):
            self._rewrite(key, batch)

    def _delete_at(self, key: str, idx: int) -> ChatMessage | None:
        check_session_id(key)
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise InvalidInput(f"idx must be a list position (an int), got {idx!r}")
        with self.lease(key):
            current = self._statused(key)
            if not -len(current) <= idx < len(current):
                return None
            gone, _ = current.pop(idx)
            self._rewrite(key, [(m.message(), s) for m, s in current])
        return from_chatkeep(gone)

    def _delete_all(self, key: str, status: MessageStatus | None) -> None:
        check_session_id(key)
        with self.lease(key):
            if status is None:
                self._store.delete(key)
                return
            keep = [(m.message(), s) for m, s in self._statused(key) if s != status]
            self._rewrite(key, keep)

    def _take_oldest(self, key: str, n: int, archive: bool) -> list[ChatMessage]:
        check_session_id(key)
        if not isinstance(n, int) or n < 0:
            raise InvalidInput(f"n must be an int >= 0, got {n!r}")
        if n == 0:
            return []
        with self.lease(key):
            current = self._statused(key)
            taken = [m for m, s in current if s == MessageStatus.ACTIVE][:n]
            if not taken:
                return []
            if archive:
                self._set_mark(key, taken[-1])
            else:
                gone = {m.seq for m in taken}
                self._rewrite(key, [(m.message(), s) for m, s in current if m.seq not in gone])
        return [from_chatkeep(m) for m in taken]

    # -- the AsyncDBChatStore API ---------------------------------------------------------
    async def get_messages(
        self,
        key: str,
        status: MessageStatus | None = MessageStatus.ACTIVE,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[ChatMessage]:
        """Messages of ``key`` with ``status`` (None: all), oldest first."""
        return await asyncio.to_thread(self._get, key, status, limit, offset)

    async def count_messages(
        self, key: str, status: MessageStatus | None = MessageStatus.ACTIVE
    ) -> int:
        return len(await asyncio.to_thread(self._rows, key, status))

    async def add_message(
        self, key: str, message: ChatMessage, status: MessageStatus = MessageStatus.ACTIVE
    ) -> None:
        await asyncio.to_thread(self._add, key, [message], status)

    async def add_messages(
        self,
        key: str,
        messages: list[ChatMessage],
        status: MessageStatus = MessageStatus.ACTIVE,
    ) -> None:
        """Append ``messages`` in one atomic write."""
        await asyncio.to_thread(self._add, key, messages, status)

    async def set_messages(
        self,
        key: str,
        messages: list[ChatMessage],
        status: MessageStatus = MessageStatus.ACTIVE,
    ) -> None:
        """Replace every message of ``key`` (whatever its status) with ``messages``."""
        await asyncio.to_thread(self._set, key, messages, status)

    async def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Remove and return the message at list position ``idx`` (every status counts)."""
        return await asyncio.to_thread(self._delete_at, key, idx)

    async def delete_messages(self, key: str, status: MessageStatus | None = None) -> None:
        """Delete ``key``'s messages with ``status`` (None: the whole key)."""
        await asyncio.to_thread(self._delete_all, key, status)

    async def delete_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        """Remove the ``n`` oldest active messages and return them."""
        return await asyncio.to_thread(self._take_oldest, key, n, False)

    async def archive_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        """Mark the ``n`` oldest active messages archived and return them (atomically)."""
        return await asyncio.to_thread(self._take_oldest, key, n, True)

    async def get_keys(self) -> list[str]:
        return await asyncio.to_thread(lambda: [s.session_id for s in self._store.iter_sessions()])


class DurableMemory(LlamaMemory):
    """LlamaIndex's ``Memory`` over :class:`ChatKeepDBChatStore` with a flush that is safe
    across processes: the read-archive-deliver step runs under the session's lease.

    ``DurableMemory.from_defaults(session_id=user_id, store=store_or_url, token_limit=...)``
    takes every ``Memory.from_defaults`` argument; ``session_id`` is required (a random one
    would start every worker empty).
    """

    @classmethod
    def class_name(cls) -> str:
        return "DurableMemory"

    @classmethod
    def from_defaults(  # type: ignore[override]
        cls,
        session_id: str | None = None,
        *,
        store: Store | str | None = None,
        chat_store: ChatKeepDBChatStore | None = None,
        **kwargs: Any,
    ) -> DurableMemory:
        if session_id is None:
            raise InvalidInput(
                "DurableMemory needs a session_id (one per user or conversation); a random "
                "one would start every request, rerun and worker empty"
            )
        check_session_id(session_id)
        if chat_store is None:
            chat_store = ChatKeepDBChatStore(store)
        elif not isinstance(chat_store, ChatKeepDBChatStore):
            raise InvalidInput("chat_store must be a ChatKeepDBChatStore")
        memory = super().from_defaults(session_id=session_id, chat_store=chat_store, **kwargs)
        assert isinstance(memory, DurableMemory)
        return memory

    async def _manage_queue(self) -> None:
        store = self.sql_store
        if not isinstance(store, ChatKeepDBChatStore):
            raise InvalidInput("DurableMemory needs a ChatKeepDBChatStore as its chat store")
        async with store.alease(self.session_id):
            await super()._manage_queue()
