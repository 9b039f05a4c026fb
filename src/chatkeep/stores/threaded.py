"""Run a synchronous backend from asyncio without ever blocking the event loop.

Writes go to one writer thread, in the order they were awaited (SQLite has one writer at a
time anyway, so a single thread avoids lock ping-pong inside the process). Reads go to a small
pool of reader threads, each with its own connection, so they run beside the writer.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any, TypeVar

from chatkeep.stores.base import UNSET, Backend, NewRow, Rewrite, _Unset
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
)

T = TypeVar("T")


class ThreadedAsyncBackend:
    """The :class:`~chatkeep.stores.base.AsyncBackend` twin of any sync backend."""

    def __init__(self, backend: Backend, *, readers: int = 2) -> None:
        self.sync = backend
        self.scheme = backend.scheme
        self.ephemeral = backend.ephemeral
        self._readers = readers
        self._writer: ThreadPoolExecutor | None = None
        self._reader: ThreadPoolExecutor | None = None

    def _pools(self) -> tuple[ThreadPoolExecutor, ThreadPoolExecutor]:
        if self._writer is None or self._reader is None:
            self._writer = ThreadPoolExecutor(1, thread_name_prefix=f"chatkeep-{self.scheme}-w")
            self._reader = ThreadPoolExecutor(
                self._readers, thread_name_prefix=f"chatkeep-{self.scheme}-r"
            )
        return self._writer, self._reader

    async def _call(self, write: bool, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        writer, reader = self._pools()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            writer if write else reader, functools.partial(fn, *args, **kw)
        )

    async def open(self) -> None:
        await self._call(True, self.sync.open)

    async def close(self) -> None:
        writer, reader = self._writer, self._reader
        if writer is not None and reader is not None:
            # Let queued work finish, then close every thread's connection.
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(writer.shutdown, wait=True)
            )
            await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(reader.shutdown, wait=True)
            )
        self._writer = self._reader = None
        self.sync.close()

    async def bind_tokenizer(self, name: str) -> None:
        await self._call(True, self.sync.bind_tokenizer, name)

    async def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult:
        return await self._call(
            True,
            self.sync.append,
            tenant,
            session_id,
            rows,
            idempotency_key=idempotency_key,
            expect_last_seq=expect_last_seq,
        )

    async def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        return await self._call(
            False,
            self.sync.read,
            tenant,
            session_id,
            after_seq=after_seq,
            limit=limit,
            newest=newest,
        )

    async def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        return await self._call(
            False,
            self.sync.window,
            tenant,
            session_id,
            budget=budget,
            pin_system=pin_system,
            reserve=reserve,
        )

    async def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        return await self._call(True, self.sync.pop, tenant, session_id)

    async def clear(self, tenant: str, session_id: str) -> int:
        return await self._call(True, self.sync.clear, tenant, session_id)

    async def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult:
        return await self._call(
            True, self.sync.replace, tenant, session_id, rows, expect_last_seq=expect_last_seq
        )

    async def delete(self, tenant: str, session_id: str) -> bool:
        return await self._call(True, self.sync.delete, tenant, session_id)

    async def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        return await self._call(
            False, self.sync.sessions, tenant, prefix=prefix, limit=limit, cursor=cursor
        )

    async def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        return await self._call(False, self.sync.info, tenant, session_id)

    async def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        return await self._call(
            True,
            self.sync.update_session,
            tenant,
            session_id,
            metadata=metadata,
            expires_at=expires_at,
        )

    async def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        return await self._call(False, self.sync.get_summary, tenant, session_id)

    async def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        return await self._call(
            True, self.sync.put_summary, tenant, session_id, text, covers_through_seq, tokens
        )

    async def purge_expired(self, now: datetime) -> int:
        return await self._call(True, self.sync.purge_expired, now)

    async def erase(self, tenant: str) -> int:
        return await self._call(True, self.sync.erase, tenant)

    async def acquire_lease(
        self, tenant: str, session_id: str, owner: str, ttl: float
    ) -> Lease | None:
        return await self._call(True, self.sync.acquire_lease, tenant, session_id, owner, ttl)

    async def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        return await self._call(True, self.sync.release_lease, tenant, session_id, token)

    async def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        await self._call(True, self.sync.rewrite_bodies, tenant, session_id, rows)

    async def tenants(self) -> list[str]:
        return await self._call(False, self.sync.tenants)
