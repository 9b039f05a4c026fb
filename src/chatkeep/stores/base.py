"""The contract every backend implements: a handful of tenant-explicit primitives.

Backends get input that the public :class:`chatkeep.Store` / :class:`chatkeep.AsyncStore`
already validated (session ids, messages, sizes) and token counts already made; they own
storage, atomicity and ordering, nothing else. Conveniences live once, in the facades.

``Backend`` is the synchronous contract and ``AsyncBackend`` its twin: the same method names,
coroutines in the async one. A sync backend becomes an async one through
:class:`chatkeep.stores.threaded.ThreadedAsyncBackend`, which never blocks the event loop.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, Protocol, runtime_checkable

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
)


class NewRow(NamedTuple):
    """A validated message ready to be written: its encoded body and its token count (a
    tuple: one is made per appended message, and a tuple is the cheapest immutable record).
    ``msg_id`` is the id to store it under; None lets the backend make one (the encryption
    wrapper chooses it, because the envelope is bound to it)."""

    message: Message
    body: bytes
    tokens: int
    msg_id: str | None = None


#: One in-place body rewrite: (seq, message id, new encoded body).
Rewrite = tuple[int, str, bytes]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


@runtime_checkable
class Backend(Protocol):
    """Synchronous storage primitives. Every call names its tenant."""

    scheme: str
    #: True when the data lives only in this process (``memory://``).
    ephemeral: bool

    def open(self) -> None: ...
    def close(self) -> None: ...
    def bind_tokenizer(self, name: str) -> None:
        """Record the tokenizer's name on first use; raise ``TokenizerMismatch`` if the store
        holds counts made by another one."""

    def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult: ...
    def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]: ...
    def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window: ...
    def pop(self, tenant: str, session_id: str) -> StoredMessage | None: ...
    def clear(self, tenant: str, session_id: str) -> int: ...
    def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult:
        """Atomically make ``rows`` the session's whole list (seqs restart at 1, like after
        ``clear``); drops the summary and idempotency keys, keeps metadata and expiry, creates
        the session if needed. ``expect_last_seq`` is checked against the old list."""

    def delete(self, tenant: str, session_id: str) -> bool: ...
    def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage: ...
    def info(self, tenant: str, session_id: str) -> SessionInfo | None: ...
    def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None,
    ) -> SessionInfo: ...
    def get_summary(self, tenant: str, session_id: str) -> Summary | None: ...
    def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary: ...
    def purge_expired(self, now: datetime) -> int: ...
    def erase(self, tenant: str) -> int: ...
    def acquire_lease(
        self, tenant: str, session_id: str, owner: str, ttl: float
    ) -> Lease | None: ...
    def release_lease(self, tenant: str, session_id: str, token: int) -> bool: ...

    # -- maintenance (``chatkeep rekey``); not part of the public store API -----------------
    def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        """Set the body of each message named by (seq, id) in place: its seq, id, role,
        tokens and time, and the session's idempotency keys, summary, metadata and
        ``updated_at`` stay. All or nothing: ``ConflictError`` (nothing changed) if any
        (seq, id) is no longer in the session (popped, cleared or replaced meanwhile)."""

    def tenants(self) -> list[str]:
        """Every tenant that has at least one session (sorted)."""


@runtime_checkable
class AsyncBackend(Protocol):
    """The async twin of :class:`Backend`: same names, coroutines."""

    scheme: str
    ephemeral: bool

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def bind_tokenizer(self, name: str) -> None: ...
    async def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult: ...
    async def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]: ...
    async def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window: ...
    async def pop(self, tenant: str, session_id: str) -> StoredMessage | None: ...
    async def clear(self, tenant: str, session_id: str) -> int: ...
    async def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult: ...
    async def delete(self, tenant: str, session_id: str) -> bool: ...
    async def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage: ...
    async def info(self, tenant: str, session_id: str) -> SessionInfo | None: ...
    async def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None,
    ) -> SessionInfo: ...
    async def get_summary(self, tenant: str, session_id: str) -> Summary | None: ...
    async def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary: ...
    async def purge_expired(self, now: datetime) -> int: ...
    async def erase(self, tenant: str) -> int: ...
    async def acquire_lease(
        self, tenant: str, session_id: str, owner: str, ttl: float
    ) -> Lease | None: ...
    async def release_lease(self, tenant: str, session_id: str, token: int) -> bool: ...
    async def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None: ...
    async def tenants(self) -> list[str]: ...


#: The primitives, by name; the parity test checks both protocols and both facades.
PRIMITIVES: tuple[str, ...] = (
    "append",
    "read",
    "window",
    "pop",
    "clear",
    "replace",
    "delete",
    "sessions",
    "info",
    "update_session",
    "get_summary",
    "put_summary",
    "purge_expired",
    "erase",
    "acquire_lease",
    "release_lease",
)

#: Maintenance primitives every backend has too (used by ``chatkeep rekey``).
MAINTENANCE: tuple[str, ...] = ("rewrite_bodies", "tenants")
