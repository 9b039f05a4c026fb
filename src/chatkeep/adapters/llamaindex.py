"""LlamaIndex over chatkeep: a chat store and a memory that survive requests, reloads,
workers and restarts.

* :class:`ChatKeepChatStore` — a complete ``BaseChatStore`` over any chatkeep store, for
  ``ChatMemoryBuffer.from_defaults(chat_store=..., chat_store_key=user_id)``,
  ``ChatSummaryMemoryBuffer`` and anything else that takes a chat store.
* :class:`ChatKeepMemory` — a ``BaseMemory`` drop-in for ``ChatMemoryBuffer`` whose ``get()``
  is chatkeep's token window (cost independent of the history's length).
* :class:`ChatKeepDBChatStore` and :class:`LeasedMemory` (in
  :mod:`chatkeep.adapters.llamaindex_db`) — the ``AsyncDBChatStore`` for the newer ``Memory``.

Every object here is a cheap view: the store is opened once per process (pass a ``Store``, or
a URL that is opened once and shared) and the per-conversation objects own nothing.

One meaning per operation: ``set_messages`` replaces the whole list, ``delete_message(key, i)``
takes a list position (as ``list.pop(i)``), ``get_keys`` lists this store's tenant only.
Requires ``pip install 'chatkeep[llamaindex]'``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

from chatkeep.errors import InvalidInput, MissingDependency

try:
    from llama_index.core.base.llms.types import ChatMessage, MessageRole
    from llama_index.core.bridge.pydantic import Field, PrivateAttr
    from llama_index.core.llms.llm import LLM
    from llama_index.core.memory.types import BaseChatStoreMemory
    from llama_index.core.storage.chat_store.base import BaseChatStore
    from llama_index.core.storage.chat_store.loading import RECOGNIZED_CHAT_STORES
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency(
        "the LlamaIndex adapter needs llama-index-core: pip install 'chatkeep[llamaindex]'"
    ) from exc

from chatkeep.adapters.llamaindex_async import AsyncChatOps, AsyncOnly
from chatkeep.adapters.llamaindex_convert import from_chatkeep, to_chatkeep
from chatkeep.memory import Memory, default_store
from chatkeep.store import AsyncStore, Store
from chatkeep.stores import default_url, open_store
from chatkeep.types import Message, StoredMessage
from chatkeep.validation import check_session_id

__all__ = [
    "ChatKeepChatStore",
    "ChatKeepMemory",
    "from_chatkeep",
    "shared_store",
    "to_chatkeep",
]

DEFAULT_TOKEN_LIMIT = 3000

# -- one store per (url, tenant) per process ---------------------------------------------------
_stores_lock = threading.Lock()
_stores: dict[tuple[str, str], Store] = {}


def shared_store(url: str | None = None, tenant: str = "default") -> Store:
    """The process-wide store for ``url`` (default ``$CHATKEEP_URL``, else
    ``sqlite:///chatkeep.db``), opened on first use and closed at interpreter exit.

    Objects rebuilt from a dict (``from_dict``) find their store here, so a process never opens
    one URL twice.
    """
    if tenant == "default" and url in (None, default_url()):
        return default_store()  # the same one chatkeep.Memory(session_id) uses
    url = url or default_url()
    with _stores_lock:
        store = _stores.get((url, tenant))
        if store is None or store.closed:
            store = open_store(url, tenant=tenant)
            _stores[(url, tenant)] = store
            atexit.register(store.close)
        return store


def _resolve(store: Store | str | None, tenant: str | None) -> Store:
    if isinstance(store, Store):
        if tenant and tenant != store.tenant:
            store = store.with_tenant(tenant)
        with _stores_lock:  # from_dict() in this process finds this store, not a new one
            known = _stores.get((store.url, store.tenant))
            if known is None or known.closed:
                _stores[(store.url, store.tenant)] = store
        return store
    if store is None or isinstance(store, str):
        return shared_store(store, tenant or "default")
    raise InvalidInput(
        f"store must be a chatkeep Store or a store URL, got {type(store).__name__} "
        "(async apps: pass an AsyncStore to ChatKeepChatStore, or the URL)"
    )


# -- the session lease, re-entrant within one task/thread -------------------------------------
_held: contextvars.ContextVar[frozenset[tuple[int, str, str]]] = contextvars.ContextVar(
    "chatkeep_llamaindex_leases", default=frozenset()
)


def lease_mark(store: Store, key: str) -> tuple[int, str, str]:
    """What identifies a held lease: the backend, the tenant and the key."""
    return (id(store._root), store.tenant, key)


@contextmanager
def session_lease(store: Store, key: str, *, ttl: float, timeout: float) -> Iterator[None]:
    """Hold ``key``'s chatkeep turn lease (queueing behind other holders, in any process)."""
    mark = lease_mark(store, key)
    if mark in _held.get():
        yield
        return
    lease = Memory(key, store=store, lease_ttl=ttl, lease_timeout=timeout)._acquire()
    reset = _held.set(_held.get() | {mark})
    try:
        yield
    finally:
        _held.reset(reset)
        store.release_lease(key, lease.token)


def rewrite(store: Store, key: str, messages: Sequence[Message]) -> None:
    """Replace ``key``'s messages with ``messages`` in one atomic write (:meth:`Store.replace`):
    readers never see the key empty, and a crash leaves the old list or the new one."""
    store.replace(key, list(messages))


class ChatKeepChatStore(BaseChatStore):
    """A LlamaIndex ``BaseChatStore`` over a chatkeep store; keys are chatkeep session ids.

    ``ChatKeepChatStore(store)`` with an open :class:`chatkeep.Store`, or
    ``ChatKeepChatStore("sqlite:///chat.db")`` with a URL (opened once per process and
    shared); ``tenant=`` scopes every call. Serializes to ``{"url": ..., "tenant": ...}`` (the
    URL without its password), never a connection.

    * ``set_messages(key, msgs)`` replaces the list (an empty list empties it);
    * ``add_message(key, msg)`` appends; ``add_message(key, msg, idx=i)`` inserts at position i;
    * ``delete_message(key, i)`` removes the message at list position ``i`` (negative counts
      from the end) and returns it, or None when there is no such position;
    * ``delete_messages(key)`` removes the key and returns its messages (None if absent);
    * ``get_keys()`` lists this tenant's sessions only.

    Writes that rewrite the list (set, insert, delete at a position) run under the session's
    chatkeep lease, as do appends, so they serialize across threads, processes and machines.
    The ``a*`` methods run the same code in a worker thread (they never block the event loop),
    or natively when the chat store was built over an ``AsyncStore``.
    """

    url: str = Field(default="", description="The chatkeep store URL (without password).")
    tenant: str = Field(default="default", description="The chatkeep tenant.")
    lease_ttl: float = Field(default=30.0, description="Seconds a write may hold a session.")
    lease_timeout: float = Field(
        default=60.0,
        description="Seconds a write waits for it (longer than lease_ttl, so a crashed holder "
        "delays writers but never makes them fail).",
    )

    _store: Store = PrivateAttr()
    _async: AsyncChatOps | None = PrivateAttr(default=None)

    def __init__(
        self,
        store: Store | AsyncStore | str | None = None,
        *,
        tenant: str | None = None,
        **data: Any,
    ) -> None:
        url = data.pop("url", None)
        tenant = tenant or data.pop("tenant", None)
        if isinstance(store, AsyncStore):  # the a* methods run natively; sync calls explain
            astore = store.with_tenant(tenant) if tenant and tenant != store.tenant else store
            super().__init__(url=astore.url, tenant=astore.tenant, **data)  # type: ignore[call-arg]
            self._store = cast(Store, AsyncOnly())
            self._async = AsyncChatOps(
                astore, ttl=self.lease_ttl, timeout=self.lease_timeout, held=_held
            )
            return
        resolved = _resolve(store if store is not None else url, tenant)
        super().__init__(url=resolved.url, tenant=resolved.tenant, **data)  # type: ignore[call-arg]
        self._store = resolved

    @classmethod
    def class_name(cls) -> str:
        return "ChatKeepChatStore"

    @property
    def store(self) -> Store:
        """The chatkeep store underneath (shared; this object does not own it)."""
        return self._store

    @contextmanager
    def _lease(self, key: str) -> Iterator[None]:
        with session_lease(self._store, key, ttl=self.lease_ttl, timeout=self.lease_timeout):
            yield

    @staticmethod
    def _convert(messages: Any) -> list[Message]:
        if isinstance(messages, ChatMessage):
            raise InvalidInput("set_messages takes a list of ChatMessage, not one message")
        return [to_chatkeep(m) for m in messages]

    # -- reads ------------------------------------------------------------------------------
    def get_messages(self, key: str) -> list[ChatMessage]:
        """Every message of ``key``, oldest first ([] for an unknown key)."""
        return [from_chatkeep(m) for m in self._store.read(key)]

    def get_keys(self) -> list[str]:
        """This tenant's session ids."""
        return [s.session_id for s in self._store.iter_sessions()]

    # -- writes -----------------------------------------------------------------------------
    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Replace ``key``'s messages with ``messages`` (never appends to what was there)."""
        check_session_id(key)
        batch = self._convert(messages)  # bad input raises here: nothing is touched
        with self._lease(key):
            rewrite(self._store, key, batch)

    def add_message(self, key: str, message: ChatMessage, idx: int | None = None) -> None:
        """Append ``message`` (or insert it at list position ``idx``)."""
        check_session_id(key)
        msg = to_chatkeep(message)
        with self._lease(key):
            if idx is None:
                self._store.append(key, msg)
                return
            current = [m.message() for m in self._store.read(key)]
            current.insert(idx, msg)
            rewrite(self._store, key, current)

    def add_messages(self, key: str, messages: list[ChatMessage]) -> None:
        """Append several messages in one atomic write."""
        check_session_id(key)
        batch = self._convert(messages)
        if batch:
            with self._lease(key):
                self._store.append(key, batch)

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        """Remove ``key`` and return its messages (None if there was no such key)."""
        check_session_id(key)
        with self._lease(key):
            if self._store.info(key) is None:
                return None
            gone = self._store.read(key)
            self._store.delete(key)
        return [from_chatkeep(m) for m in gone]

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        """Remove and return the message at list position ``idx`` (None if out of range)."""
        check_session_id(key)
        if not isinstance(idx, int) or isinstance(idx, bool):
            raise InvalidInput(f"idx must be a list position (an int), got {idx!r}")
        with self._lease(key):
            current: list[StoredMessage] = self._store.read(key)
            n = len(current)
            if not -n <= idx < n:
                return None
            pos = idx % n
            if pos == n - 1:  # the newest: one atomic pop
                popped = self._store.pop(key)
                return from_chatkeep(popped) if popped is not None else None
            gone = current.pop(pos)
            rewrite(self._store, key, [m.message() for m in current])
        return from_chatkeep(gone)

    def delete_last_message(self, key: str) -> ChatMessage | None:
        """Remove and return the newest message (None if there is none)."""
        check_session_id(key)
        popped = self._store.pop(key)
        return from_chatkeep(popped) if popped is not None else None

    # -- async twins: native over an AsyncStore, else the same code in a worker thread -------
    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        if self._async is not None:
            return await self._async.set_messages(key, self._convert(messages))
        await asyncio.to_thread(self.set_messages, key, messages)

    async def aget_messages(self, key: str) -> list[ChatMessage]:
        if self._async is not None:
            return await self._async.get_messages(key)
        return await asyncio.to_thread(self.get_messages, key)

    async def async_add_message(
        self, key: str, message: ChatMessage, idx: int | None = None
    ) -> None:
        if self._async is not None:
            return await self._async.add_message(key, message, idx)
        await asyncio.to_thread(self.add_message, key, message, idx)

    async def aadd_messages(self, key: str, messages: list[ChatMessage]) -> None:
        if self._async is not None:
            return await self._async.add_messages(key, self._convert(messages))
        await asyncio.to_thread(self.add_messages, key, messages)

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        if self._async is not None:
            return await self._async.delete_messages(key)
        return await asyncio.to_thread(self.delete_messages, key)

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        if self._async is not None:
            return await self._async.delete_message(key, idx)
        return await asyncio.to_thread(self.delete_message, key, idx)

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        if self._async is not None:
            return await self._async.delete_last_message(key)
        return await asyncio.to_thread(self.delete_last_message, key)

    async def aget_keys(self) -> list[str]:
        if self._async is not None:
            return await self._async.get_keys()
        return await asyncio.to_thread(self.get_keys)


# ChatMemoryBuffer.from_dict() finds chat stores by class name in this registry.
RECOGNIZED_CHAT_STORES.setdefault(
    ChatKeepChatStore.class_name(),
    ChatKeepChatStore,  # type: ignore[arg-type]
)


class ChatKeepMemory(BaseChatStoreMemory):
    """A drop-in for ``ChatMemoryBuffer`` whose ``get()`` is chatkeep's token window.

    ``ChatKeepMemory.from_defaults(session_id="user-42", token_limit=3000)`` (store: the
    ``store=`` argument, a URL, or ``$CHATKEEP_URL`` / ``sqlite:///chatkeep.db``). Unlike
    ``ChatMemoryBuffer.get()``, which re-tokenizes the history for every message it drops,
    ``get()`` is served from token counts stored when each message was written, so its cost
    does not grow with the history. The window pins system messages, never starts on an
    assistant or tool message (so never returns a lone tool result), counts tool-call
    arguments, and always includes the latest user message.

    Create one per request: it holds no messages. ``to_dict()`` / ``from_dict()`` round-trip
    through the store's URL.
    """

    token_limit: int = Field(default=DEFAULT_TOKEN_LIMIT, gt=0)
    pin_system: bool = Field(default=True)

    @classmethod
    def class_name(cls) -> str:
        return "ChatKeepMemory"

    @classmethod
    def from_defaults(  # type: ignore[override]
        cls,
        session_id: str | None = None,
        token_limit: int | None = None,
        *,
        store: Store | str | None = None,
        tenant: str | None = None,
        chat_store: ChatKeepChatStore | None = None,
        chat_store_key: str | None = None,
        chat_history: list[ChatMessage] | None = None,
        llm: LLM | None = None,
        pin_system: bool = True,
        **kwargs: Any,
    ) -> ChatKeepMemory:
        """``session_id`` (alias ``chat_store_key``) names the conversation; with ``llm`` and
        no ``token_limit`` the limit is 75% of its context window, as ``ChatMemoryBuffer``."""
        if kwargs:
            raise InvalidInput(f"unexpected arguments: {', '.join(sorted(kwargs))}")
        key = session_id or chat_store_key
        if key is None:
            raise InvalidInput(
                "ChatKeepMemory needs a session_id (one per user or conversation, e.g. the "
                "user id); a constant or random one would share or lose conversations"
            )
        check_session_id(key)
        if token_limit is None:
            token_limit = (
                int(llm.metadata.context_window * 0.75) if llm is not None else DEFAULT_TOKEN_LIMIT
            )
        if chat_store is None:
            chat_store = ChatKeepChatStore(store, tenant=tenant)
        elif not isinstance(chat_store, ChatKeepChatStore):
            raise InvalidInput("chat_store must be a ChatKeepChatStore")
        if chat_history is not None:
            chat_store.set_messages(key, chat_history)
        return cls(
            chat_store=chat_store,
            chat_store_key=key,
            token_limit=token_limit,
            pin_system=pin_system,
        )

    @property
    def session_id(self) -> str:
        return self.chat_store_key

    @property
    def _ck(self) -> ChatKeepChatStore:
        store = self.chat_store
        if not isinstance(store, ChatKeepChatStore):
            raise InvalidInput(
                "ChatKeepMemory needs a ChatKeepChatStore: build it with "
                "ChatKeepMemory.from_defaults(session_id=..., store=...)"
            )
        return store

    @classmethod
    def from_dict(cls, data: dict[str, Any], **kwargs: Any) -> ChatKeepMemory:
        data = {**data, **kwargs}
        data.pop("class_name", None)
        store_data = dict(data.pop("chat_store", None) or {})
        store_data.pop("class_name", None)
        return cls(chat_store=ChatKeepChatStore(**store_data), **data)

    def to_string(self) -> str:
        return self.to_json()

    @classmethod
    def from_string(cls, json_str: str) -> ChatKeepMemory:
        import json

        return cls.from_dict(json.loads(json_str))

    def get(
        self, input: str | None = None, initial_token_count: int = 0, **kwargs: Any
    ) -> list[ChatMessage]:
        """The window: pinned system messages, the stored summary (as a system message), then
        the newest messages that fit ``token_limit - initial_token_count``."""
        if initial_token_count > self.token_limit:
            raise ValueError("Initial token count exceeds token limit")
        window = self._ck.store.window(
            self.chat_store_key,
            self.token_limit,
            pin_system=self.pin_system,
            reserve=max(0, initial_token_count),
        )
        out = [from_chatkeep(m) for m in window.system]
        if window.summary is not None:
            out.append(
                ChatMessage(
                    role=MessageRole.SYSTEM,
                    content=f"Summary of the earlier conversation:\n{window.summary.text}",
                )
            )
        out.extend(from_chatkeep(m) for m in window.messages)
        return out

    async def aget(
        self, input: str | None = None, initial_token_count: int = 0, **kwargs: Any
    ) -> list[ChatMessage]:
        return await asyncio.to_thread(
            self.get, input=input, initial_token_count=initial_token_count, **kwargs
        )

    def put_messages(self, messages: list[ChatMessage]) -> None:
        """Append ``messages`` in one atomic write."""
        self._ck.add_messages(self.chat_store_key, messages)

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        await asyncio.to_thread(self.put_messages, messages)
