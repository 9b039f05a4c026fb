"""``Store`` and ``AsyncStore``: the public, tenant-scoped face of every backend.

Both twins share :class:`_StoreCore`, which holds every non-IO step: input validation, token
counting (once, at write time), limits, tenant scoping and the lifecycle state. The twins only
forward to the backend (``await``-ing in the async one). Open a store once for the app's
lifetime (``with open_store() as store:`` or the app's lifespan); per-conversation objects such
as :class:`chatkeep.Memory` are cheap views that own nothing.
"""

from __future__ import annotations

import enum
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from chatkeep._serving import serving_under
from chatkeep.errors import EphemeralStoreWarning, InvalidInput, StoreClosed, StoreUnavailable
from chatkeep.held_leases import HeldLeases
from chatkeep.policies.tokens import message_tokens, text_tokens
from chatkeep.stores._common import payloads_of
from chatkeep.stores.base import UNSET, AsyncBackend, Backend, NewRow, _Unset
from chatkeep.tokenizers import Tokenizer, resolve_tokenizer
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    Message,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
    as_message_list,
    utcnow,
)
from chatkeep.validation import (
    Limits,
    check_no_nul,
    check_owner,
    check_prefix,
    check_session_id,
    check_tenant,
)

#: the largest count, seq, limit or token a store accepts (a signed 64-bit column everywhere)
MAX_INT = 2**63 - 1

MessagesIn = Message | Mapping[str, Any] | Sequence[Message | Mapping[str, Any]]
DEFAULT_TENANT = "default"


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPEN = "open"
    CLOSED = "closed"


class _StoreCore:
    def __init__(
        self,
        backend: Any,
        *,
        url: str,
        tenant: str = DEFAULT_TENANT,
        tokenizer: Tokenizer | str | None = None,
        limits: Limits | None = None,
        purge_interval: float = 60.0,
    ) -> None:
        self._backend = backend
        self.url = url
        self._tenant = check_tenant(tenant)
        self._tokenizer = resolve_tokenizer(tokenizer)
        self.limits = limits or Limits()
        self.purge_interval = purge_interval
        self._last_purge = 0.0
        self._state = _State.UNOPENED
        self._owner: _StoreCore | None = None  # set on with_tenant() views
        self._held = HeldLeases()  # leases whose release failed (the root's is used)

    @property
    def tenant(self) -> str:
        return self._tenant

    @property
    def tokenizer(self) -> Tokenizer:
        return self._tokenizer

    @property
    def scheme(self) -> str:
        return str(self._backend.scheme)

    @property
    def persistent(self) -> bool | None:
        """Does the data survive a restart? False for ``memory://`` and for a Redis server
        with neither AOF nor RDB snapshots, None when the server will not say (CONFIG
        disabled), True otherwise. Known once the store is open."""
        value = getattr(self._backend, "persistent", not self._backend.ephemeral)
        return None if value is None else bool(value)

    @property
    def closed(self) -> bool:
        return self._root._state is _State.CLOSED

    @property
    def _root(self) -> _StoreCore:
        return self._owner if self._owner is not None else self

    def _ready(self) -> None:
        state = self._root._state
        if state is _State.OPEN:
            return
        if state is _State.CLOSED:
            raise StoreClosed(
                f"the {self.scheme} store {self.url} was closed. Open the store once when the "
                "app starts (open_store() or its lifespan) and close it at shutdown; "
                "per-request objects should reuse it."
            )
        raise StoreClosed(
            f"the {self.scheme} store {self.url} is not open yet: use open_store(), "
            "`with store:` or call store.open() first"
        )

    def _warn_if_ephemeral(self) -> None:
        if not self._backend.ephemeral:
            return
        server = serving_under()
        if server is not None:
            warnings.warn(
                f"memory:// keeps conversations in this process only; under {server} a "
                "reload, a second worker or a restart loses them. Use sqlite:///chatkeep.db "
                "(the default) or another durable store.",
                EphemeralStoreWarning,
                stacklevel=4,
            )

    def _rows(self, messages: MessagesIn) -> list[NewRow]:
        if type(messages) is Message:  # one message, the common append: no list to normalise
            m = messages
            body = self.limits.check([m])[0]
            return [NewRow(m, body, message_tokens(self._tokenizer, m))]
        batch = as_message_list(messages)
        bodies = self.limits.check(batch)
        tok = self._tokenizer
        return [NewRow(m, b, message_tokens(tok, m)) for m, b in zip(batch, bodies, strict=True)]

    def _replace_rows(self, messages: MessagesIn, expect_last_seq: int | None) -> list[NewRow]:
        """The new list of a replace: may be empty, and is checked in ``max_batch`` chunks
        (a replace writes a whole conversation, so only each message's size is limited)."""
        self._check_append_args(None, expect_last_seq)
        batch = as_message_list(messages)
        step = self.limits.max_batch
        bodies = [
            b for i in range(0, len(batch), step) for b in self.limits.check(batch[i : i + step])
        ]
        tok = self._tokenizer
        return [NewRow(m, b, message_tokens(tok, m)) for m, b in zip(batch, bodies, strict=True)]

    @staticmethod
    def _check_append_args(idempotency_key: str | None, expect_last_seq: int | None) -> None:
        if idempotency_key is not None:
            check_session_id(idempotency_key)  # same rules: 1..256 printable characters
        _StoreCore._check_count(expect_last_seq, "expect_last_seq")

    @staticmethod
    def _check_count(value: int | None, what: str, minimum: int = 0) -> None:
        # the upper bound: every database column for counts and seqs is a signed 64-bit int
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= MAX_INT
        ):
            raise InvalidInput(f"{what} must be an int in [{minimum}, 2**63-1], got {value!r}")

    def _due_purge(self) -> bool:
        now = time.monotonic()
        if now - self._root._last_purge >= self.purge_interval:
            self._root._last_purge = now
            return True
        return False

    def count_tokens(self, message: Message | Mapping[str, Any]) -> int:
        """Tokens ``message`` would be stored with (its text, tool calls and framing)."""
        return message_tokens(self._tokenizer, as_message_list(message)[0])

    def _view_of(self, tenant: str) -> dict[str, Any]:
        return {
            "url": self.url,
            "tenant": tenant,
            "tokenizer": self._tokenizer,
            "limits": self.limits,
            "purge_interval": self.purge_interval,
        }

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.url} tenant={self._tenant!r} {self._root._state.value}>"
        )


class Store(_StoreCore):
    """A synchronous, tenant-scoped chat store. Thread-safe; share one per process."""

    _backend: Backend

    def __init__(self, backend: Backend, **kw: Any) -> None:
        super().__init__(backend, **kw)

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> Store:
        """Open the backend (create/migrate the schema). Idempotent while open."""
        if self._owner is not None or self._state is _State.OPEN:
            return self
        if self._state is _State.CLOSED:
            raise StoreClosed(f"{self.url} was closed; a closed store cannot be reopened")
        self._backend.open()
        self._backend.bind_tokenizer(self._tokenizer.name)
        self._state = _State.OPEN
        self._warn_if_ephemeral()
        self.purge_expired()
        self._last_purge = time.monotonic()
        return self

    def close(self) -> None:
        """Close the backend. Views made by :meth:`with_tenant` close nothing."""
        if self._owner is not None or self._state is _State.CLOSED:
            return
        if self._state is _State.OPEN:
            self._backend.close()
        self._state = _State.CLOSED

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def with_tenant(self, tenant: str) -> Store:
        """A view of the same backend scoped to another tenant (shares connections)."""
        view = Store(self._backend, **self._view_of(tenant))
        view._owner = self._root
        return view

    # -- writes ------------------------------------------------------------------------------
    def append(
        self,
        session_id: str,
        messages: MessagesIn,
        *,
        idempotency_key: str | None = None,
        expect_last_seq: int | None = None,
    ) -> AppendResult:
        """Append one or more messages atomically: all are stored or none.

        With an ``idempotency_key`` already used on this session nothing is stored and the
        original result comes back (``replayed=True``). With ``expect_last_seq`` that no longer
        matches the session, :class:`~chatkeep.errors.ConflictError` is raised.
        """
        check_session_id(session_id)
        self._check_append_args(idempotency_key, expect_last_seq)
        rows = self._rows(messages)
        self._ready()
        if self._due_purge():
            self._backend.purge_expired(utcnow())
        return self._backend.append(
            self._tenant,
            session_id,
            rows,
            idempotency_key=idempotency_key,
            expect_last_seq=expect_last_seq,
        )

    def add(self, session_id: str, role: str, content: Any = "", **fields: Any) -> StoredMessage:
        """Append one message built from its fields; return it as stored."""
        msg = Message.from_dict({"role": role, "content": content, **fields})
        return self.append(session_id, msg).messages[0]

    def pop(self, session_id: str) -> StoredMessage | None:
        """Remove and return the newest message (None if the session is empty)."""
        check_session_id(session_id)
        self._ready()
        return self._backend.pop(self._tenant, session_id)

    def clear(self, session_id: str) -> int:
        """Delete every message (and the summary) but keep the session; return how many."""
        check_session_id(session_id)
        self._ready()
        return self._backend.clear(self._tenant, session_id)

    def replace(
        self, session_id: str, messages: MessagesIn, *, expect_last_seq: int | None = None
    ) -> AppendResult:
        """Atomically make ``messages`` the session's whole list (``[]`` empties it).

        Readers see the old list or the new one, never an empty or mixed one, and a crash
        leaves one of the two. Seqs restart at 1 (as after :meth:`clear`); the summary and
        idempotency keys go, metadata and expiry stay; the session is created if needed. Bad
        input stores nothing. With ``expect_last_seq`` that no longer matches the old list,
        :class:`~chatkeep.errors.ConflictError` is raised and nothing changes.
        """
        check_session_id(session_id)
        rows = self._replace_rows(messages, expect_last_seq)
        self._ready()
        return self._backend.replace(
            self._tenant, session_id, rows, expect_last_seq=expect_last_seq
        )

    def delete(self, session_id: str) -> bool:
        """Delete the session and everything in it; True if it existed."""
        check_session_id(session_id)
        self._ready()
        return self._backend.delete(self._tenant, session_id)

    def update_session(
        self,
        session_id: str,
        *,
        metadata: JSONObject | None = None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        """Set the session's metadata and/or expiry (None clears it); creates the session."""
        check_session_id(session_id)
        _check_session_update(metadata, expires_at)
        self._ready()
        return self._backend.update_session(
            self._tenant, session_id, metadata=metadata, expires_at=expires_at
        )

    def put_summary(self, session_id: str, text: str, covers_through_seq: int) -> Summary:
        """Store a running summary of messages ``1..covers_through_seq``."""
        check_session_id(session_id)
        _check_summary_text(text)
        self._check_count(covers_through_seq, "covers_through_seq")
        self._ready()
        return self._backend.put_summary(
            self._tenant,
            session_id,
            text,
            covers_through_seq,
            text_tokens(self._tokenizer, text),
        )

    def purge_expired(self) -> int:
        """Really delete every session whose expiry has passed (all tenants); return count."""
        self._ready()
        return self._backend.purge_expired(utcnow())

    def erase(self, tenant: str | None = None) -> int:
        """Delete every session of ``tenant`` (default: this store's); return how many."""
        self._ready()
        return self._backend.erase(check_tenant(self._tenant if tenant is None else tenant))

    def acquire_lease(self, session_id: str, *, owner: str, ttl: float) -> Lease | None:
        """Take the session's turn lease for ``ttl`` seconds, or None if someone holds it."""
        check_session_id(session_id)
        _check_ttl(ttl)
        check_owner(owner)
        self._ready()
        held = self._root._held
        try:
            lease = self._backend.acquire_lease(self._tenant, session_id, owner, ttl)
        except StoreUnavailable:  # it may have been granted with the reply lost
            held.acquire_failed(self._tenant, session_id, owner)
            raise
        if held:  # the backend answers again: free what an outage left held
            held.drain(self._backend)
        return lease

    def release_lease(self, session_id: str, token: int) -> bool:
        """Release a lease taken by :meth:`acquire_lease`. If the store is unreachable, this
        raises, and the store releases the lease the next time it takes one (so does an
        acquire that raised: it may have been granted; see :mod:`chatkeep.held_leases`)."""
        check_session_id(session_id)
        self._check_count(token, "lease token")
        self._ready()
        try:
            return self._backend.release_lease(self._tenant, session_id, token)
        except StoreUnavailable:
            self._root._held.release_failed(self._tenant, session_id, token)
            raise

    # -- reads -------------------------------------------------------------------------------
    def read(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[StoredMessage]:
        """Messages with seq > ``after_seq`` in order; ``newest=True`` takes the last ``limit``."""
        check_session_id(session_id)
        self._check_count(after_seq, "after_seq")
        self._check_count(limit, "limit", 1)
        self._ready()
        return self._backend.read(
            self._tenant, session_id, after_seq=after_seq, limit=limit, newest=newest
        )

    def read_payloads(
        self,
        session_id: str,
        fmt: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[JSONObject | StoredMessage]:
        """:meth:`read` for framework adapters: each message stored with format ``fmt`` and a
        payload comes back as its payload alone (a dict the caller owns), any other as its
        :class:`~chatkeep.StoredMessage`. On SQLite no ``StoredMessage`` is built for those."""
        check_session_id(session_id)
        self._check_count(after_seq, "after_seq")
        self._check_count(limit, "limit", 1)
        self._ready()
        fast = getattr(self._backend, "read_payloads", None)
        if fast is not None:
            out: list[JSONObject | StoredMessage] = fast(
                self._tenant, session_id, fmt, after_seq=after_seq, limit=limit, newest=newest
            )
            return out
        rows = self._backend.read(
            self._tenant, session_id, after_seq=after_seq, limit=limit, newest=newest
        )
        return payloads_of(rows, fmt)

    def last(self, session_id: str) -> StoredMessage | None:
        rows = self.read(session_id, limit=1, newest=True)
        return rows[0] if rows else None

    def window(
        self, session_id: str, token_budget: int, *, pin_system: bool = True, reserve: int = 0
    ) -> Window:
        """The messages the LLM should get within ``token_budget`` (see the window policy)."""
        check_session_id(session_id)
        self._check_count(token_budget, "token_budget")
        self._check_count(reserve, "reserve")
        self._ready()
        return self._backend.window(
            self._tenant,
            session_id,
            budget=token_budget,
            pin_system=pin_system,
            reserve=reserve,
        )

    def info(self, session_id: str) -> SessionInfo | None:
        check_session_id(session_id)
        self._ready()
        return self._backend.info(self._tenant, session_id)

    def get_summary(self, session_id: str) -> Summary | None:
        check_session_id(session_id)
        self._ready()
        return self._backend.get_summary(self._tenant, session_id)

    def sessions(
        self, *, prefix: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> SessionPage:
        """One page of this tenant's sessions, ordered by id; pass ``next_cursor`` back."""
        self._check_count(limit, "limit", 1)
        check_prefix(prefix)
        self._ready()
        return self._backend.sessions(self._tenant, prefix=prefix, limit=limit, cursor=cursor)

    def iter_sessions(
        self, *, prefix: str | None = None, page_size: int = 500
    ) -> Iterator[SessionInfo]:
        """Every session of this tenant, page by page."""
        cursor: str | None = None
        while True:
            page = self.sessions(prefix=prefix, limit=page_size, cursor=cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


class AsyncStore(_StoreCore):
    """The async twin of :class:`Store`: the same methods, as coroutines."""

    _backend: AsyncBackend

    def __init__(self, backend: AsyncBackend, **kw: Any) -> None:
        super().__init__(backend, **kw)

    async def open(self) -> AsyncStore:
        if self._owner is not None or self._state is _State.OPEN:
            return self
        if self._state is _State.CLOSED:
            raise StoreClosed(f"{self.url} was closed; a closed store cannot be reopened")
        await self._backend.open()
        await self._backend.bind_tokenizer(self._tokenizer.name)
        self._state = _State.OPEN
        self._warn_if_ephemeral()
        await self.purge_expired()
        self._last_purge = time.monotonic()
        return self

    async def close(self) -> None:
        if self._owner is not None or self._state is _State.CLOSED:
            return
        if self._state is _State.OPEN:
            await self._backend.close()
        self._state = _State.CLOSED

    async def __aenter__(self) -> AsyncStore:
        return await self.open()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def with_tenant(self, tenant: str) -> AsyncStore:
        view = AsyncStore(self._backend, **self._view_of(tenant))
        view._owner = self._root
        return view

    async def append(
        self,
        session_id: str,
        messages: MessagesIn,
        *,
        idempotency_key: str | None = None,
        expect_last_seq: int | None = None,
    ) -> AppendResult:
        check_session_id(session_id)
        self._check_append_args(idempotency_key, expect_last_seq)
        rows = self._rows(messages)
        self._ready()
        if self._due_purge():
            await self._backend.purge_expired(utcnow())
        return await self._backend.append(
            self._tenant,
            session_id,
            rows,
            idempotency_key=idempotency_key,
            expect_last_seq=expect_last_seq,
        )

    async def add(
        self, session_id: str, role: str, content: Any = "", **fields: Any
    ) -> StoredMessage:
        msg = Message.from_dict({"role": role, "content": content, **fields})
        return (await self.append(session_id, msg)).messages[0]

    async def pop(self, session_id: str) -> StoredMessage | None:
        check_session_id(session_id)
        self._ready()
        return await self._backend.pop(self._tenant, session_id)

    async def clear(self, session_id: str) -> int:
        check_session_id(session_id)
        self._ready()
        return await self._backend.clear(self._tenant, session_id)

    async def replace(
        self, session_id: str, messages: MessagesIn, *, expect_last_seq: int | None = None
    ) -> AppendResult:
        check_session_id(session_id)
        rows = self._replace_rows(messages, expect_last_seq)
        self._ready()
        return await self._backend.replace(
            self._tenant, session_id, rows, expect_last_seq=expect_last_seq
        )

    async def delete(self, session_id: str) -> bool:
        check_session_id(session_id)
        self._ready()
        return await self._backend.delete(self._tenant, session_id)

    async def update_session(
        self,
        session_id: str,
        *,
        metadata: JSONObject | None = None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        check_session_id(session_id)
        _check_session_update(metadata, expires_at)
        self._ready()
        return await self._backend.update_session(
            self._tenant, session_id, metadata=metadata, expires_at=expires_at
        )

    async def put_summary(self, session_id: str, text: str, covers_through_seq: int) -> Summary:
        check_session_id(session_id)
        _check_summary_text(text)
        self._check_count(covers_through_seq, "covers_through_seq")
        self._ready()
        return await self._backend.put_summary(
            self._tenant,
            session_id,
            text,
            covers_through_seq,
            text_tokens(self._tokenizer, text),
        )

    async def purge_expired(self) -> int:
        self._ready()
        return await self._backend.purge_expired(utcnow())

    async def erase(self, tenant: str | None = None) -> int:
        self._ready()
        return await self._backend.erase(check_tenant(self._tenant if tenant is None else tenant))

    async def acquire_lease(self, session_id: str, *, owner: str, ttl: float) -> Lease | None:
        check_session_id(session_id)
        _check_ttl(ttl)
        check_owner(owner)
        self._ready()
        held = self._root._held
        try:
            lease = await self._backend.acquire_lease(self._tenant, session_id, owner, ttl)
        except StoreUnavailable:  # it may have been granted with the reply lost
            held.acquire_failed(self._tenant, session_id, owner)
            raise
        if held:  # the backend answers again: free what an outage left held
            await held.drain_async(self._backend)
        return lease

    async def release_lease(self, session_id: str, token: int) -> bool:
        check_session_id(session_id)
        self._check_count(token, "lease token")
        self._ready()
        try:
            return await self._backend.release_lease(self._tenant, session_id, token)
        except StoreUnavailable:
            self._root._held.release_failed(self._tenant, session_id, token)
            raise

    async def read(
        self,
        session_id: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[StoredMessage]:
        check_session_id(session_id)
        self._check_count(after_seq, "after_seq")
        self._check_count(limit, "limit", 1)
        self._ready()
        return await self._backend.read(
            self._tenant, session_id, after_seq=after_seq, limit=limit, newest=newest
        )

    async def read_payloads(
        self,
        session_id: str,
        fmt: str,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[JSONObject | StoredMessage]:
        """The async twin of :meth:`Store.read_payloads` (built on :meth:`read`)."""
        rows = await self.read(session_id, after_seq=after_seq, limit=limit, newest=newest)
        return payloads_of(rows, fmt)

    async def last(self, session_id: str) -> StoredMessage | None:
        rows = await self.read(session_id, limit=1, newest=True)
        return rows[0] if rows else None

    async def window(
        self, session_id: str, token_budget: int, *, pin_system: bool = True, reserve: int = 0
    ) -> Window:
        check_session_id(session_id)
        self._check_count(token_budget, "token_budget")
        self._check_count(reserve, "reserve")
        self._ready()
        return await self._backend.window(
            self._tenant,
            session_id,
            budget=token_budget,
            pin_system=pin_system,
            reserve=reserve,
        )

    async def info(self, session_id: str) -> SessionInfo | None:
        check_session_id(session_id)
        self._ready()
        return await self._backend.info(self._tenant, session_id)

    async def get_summary(self, session_id: str) -> Summary | None:
        check_session_id(session_id)
        self._ready()
        return await self._backend.get_summary(self._tenant, session_id)

    async def sessions(
        self, *, prefix: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> SessionPage:
        self._check_count(limit, "limit", 1)
        check_prefix(prefix)
        self._ready()
        return await self._backend.sessions(self._tenant, prefix=prefix, limit=limit, cursor=cursor)

    async def iter_sessions(
        self, *, prefix: str | None = None, page_size: int = 500
    ) -> AsyncIterator[SessionInfo]:
        cursor: str | None = None
        while True:
            page = await self.sessions(prefix=prefix, limit=page_size, cursor=cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


def _check_session_update(metadata: Any, expires_at: Any) -> None:
    if metadata is not None:
        Message("user", metadata=metadata)  # same JSON-object rules as message metadata
    if not isinstance(expires_at, _Unset) and expires_at is not None:
        if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
            raise InvalidInput("expires_at must be a timezone-aware datetime or None")


def _check_summary_text(text: Any) -> None:
    if not isinstance(text, str):
        raise InvalidInput(f"summary text must be a string, got {type(text).__name__}")
    Message("assistant", text)  # same text rules as message content
    check_no_nul(text, "summary text")


def _check_ttl(ttl: Any) -> None:
    if not isinstance(ttl, int | float) or not 0 < ttl <= 86_400:
        raise InvalidInput(f"lease ttl must be a number of seconds in (0, 86400], got {ttl!r}")
