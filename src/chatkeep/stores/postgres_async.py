"""The native async twin of :mod:`chatkeep.stores.postgres` (``psycopg.AsyncConnection``).

The same sans-IO operations from :mod:`chatkeep.stores.postgres_ops`, run on an
``AsyncConnectionPool``: no threads, the event loop is never blocked.

* One row per message; a session row whose lock orders appends to one session while other
  sessions proceed in parallel. The common append is one statement (one round trip); a new
  session, an idempotency key or a conflict takes one transaction. Either way an append is
  all or nothing.
* Windows are one statement served from stored running token totals.
* Driver errors become :class:`~chatkeep.StoreUnavailable` with the driver's error chained;
  a server that does not answer fails within ``connect_timeout`` / ``pool_timeout`` /
  ``statement_timeout`` seconds, never hangs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from chatkeep.errors import StoreUnavailable
from chatkeep.stores import postgres_ops as ops
from chatkeep.stores.base import UNSET, NewRow, Rewrite, _Unset
from chatkeep.stores.postgres import is_idempotency_race, unavailable
from chatkeep.stores.postgres_connect import LastError, async_connection_class
from chatkeep.stores.postgres_schema import Sql, parse_url
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


class AsyncPostgresBackend:
    scheme = "postgresql"
    ephemeral = False

    def __init__(self, url: str, redacted: str) -> None:
        self.url = redacted
        self.options = parse_url(url, redacted)
        self.sql = Sql(self.options.schema)
        self._pool: AsyncConnectionPool[Any] | None = None

    # -- running operations ----------------------------------------------------------------
    @staticmethod
    async def _drive(conn: psycopg.AsyncConnection[Any], op: ops.Op) -> Any:
        cur = conn.cursor(binary=True)
        try:
            q = next(op)
            while True:
                await cur.execute(q.query, q.params)
                if q.fetch == "all":
                    res: Any = await cur.fetchall()
                elif q.fetch == "one":
                    res = await cur.fetchone()
                elif q.fetch == "rowcount":
                    res = cur.rowcount
                else:
                    res = None
                q = op.send(res)
        except StopIteration as stop:
            return stop.value
        finally:
            await cur.close()

    async def _run(self, make: Callable[[], ops.Op], *, tx: bool) -> Any:
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is not open")
        try:
            async with pool.connection() as conn:
                if not tx:
                    return await self._drive(conn, make())
                async with conn.transaction():
                    return await self._drive(conn, make())
        except (psycopg.Error, PoolTimeout) as exc:
            if is_idempotency_race(exc):
                raise
            if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, PoolTimeout):
                await self._recheck(pool)
            raise unavailable(self.url, exc) from exc

    @staticmethod
    async def _recheck(pool: AsyncConnectionPool[Any]) -> None:
        """After a connection broke, drop the other idle ones that broke with it, so the next
        call gets a live connection (or a clear error) instead of another dead one."""
        try:
            await pool.check()
        except Exception:  # the next call reports the outage itself
            pass

    # -- lifecycle ---------------------------------------------------------------------------
    async def open(self) -> None:
        o = self.options
        last = LastError()  # the reason, which the pool's timeout lacks
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            o.conninfo,
            min_size=o.min_size,
            max_size=o.max_size,
            timeout=o.pool_timeout,
            reconnect_timeout=o.reconnect_timeout,
            kwargs=o.connect_kwargs(),
            open=False,
            name=f"chatkeep:{o.schema}",
            connection_class=async_connection_class(last),  # keeps why connecting failed
        )
        try:
            await pool.open(wait=o.min_size > 0, timeout=o.connect_timeout)
        except PoolTimeout as exc:
            await pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.url} within {o.connect_timeout:g}s "
                f"(connect_timeout){last.explain()}"
            ) from exc
        self._pool = pool
        try:
            await self._run(lambda: ops.migrate(self.sql), tx=True)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def bind_tokenizer(self, name: str) -> None:
        await self._run(lambda: ops.bind_tokenizer(self.sql, name, self.url), tx=False)

    # -- primitives --------------------------------------------------------------------------
    async def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult:
        s = self.sql
        if idempotency_key is None:
            done = await self._run(
                lambda: ops.append_fast(s, tenant, session_id, rows, expect_last_seq), tx=False
            )
            if done is not None:
                return done  # type: ignore[no-any-return]
        for attempt in (1, 2):
            try:
                return await self._run(  # type: ignore[no-any-return]
                    lambda: ops.append_tx(
                        s, tenant, session_id, rows, idempotency_key, expect_last_seq
                    ),
                    tx=True,
                )
            except ops.Replay as replay:
                return replay.result
            except psycopg.Error as exc:  # the same key committed concurrently: replay it
                if attempt == 2:
                    raise unavailable(self.url, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        return await self._run(  # type: ignore[no-any-return]
            lambda: ops.read(self.sql, tenant, session_id, after_seq, limit, newest), tx=False
        )

    async def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        return await self._run(  # type: ignore[no-any-return]
            lambda: ops.window(self.sql, tenant, session_id, budget, pin_system, reserve),
            tx=False,
        )

    async def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        return await self._run(lambda: ops.pop(self.sql, tenant, session_id), tx=True)  # type: ignore[no-any-return]

    async def clear(self, tenant: str, session_id: str) -> int:
        return await self._run(lambda: ops.clear(self.sql, tenant, session_id), tx=True)  # type: ignore[no-any-return]

    async def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult:
        return await self._run(  # type: ignore[no-any-return]
            lambda: ops.replace(self.sql, tenant, session_id, rows, expect_last_seq), tx=True
        )

    async def delete(self, tenant: str, session_id: str) -> bool:
        return await self._run(lambda: ops.delete(self.sql, tenant, session_id), tx=True)  # type: ignore[no-any-return]

    async def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        return await self._run(  # type: ignore[no-any-return]
            lambda: ops.sessions(self.sql, tenant, prefix, limit, cursor), tx=False
        )

    async def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        return await self._run(lambda: ops.info(self.sql, tenant, session_id), tx=False)  # type: ignore[no-any-return]

    async def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        return await self._run(  # type: ignore[no-any-return]
            lambda: ops.update_session(self.sql, tenant, session_id, metadata, expires_at),
            tx=True,
        )

    async def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        return await self._run(lambda: ops.get_summary(self.sql, tenant, session_id), tx=False)  # type: ignore[no-any-return]

    async def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        return await self._run(  # type: ignore[no-any-return]
            lambda: ops.put_summary(self.sql, tenant, session_id, text, covers_through_seq, tokens),
            tx=True,
        )

    async def purge_expired(self, now: datetime) -> int:
        return await self._run(lambda: ops.purge_expired(self.sql, now), tx=True)  # type: ignore[no-any-return]

    async def erase(self, tenant: str) -> int:
        return await self._run(lambda: ops.erase(self.sql, tenant), tx=True)  # type: ignore[no-any-return]

    async def acquire_lease(
        self, tenant: str, session_id: str, owner: str, ttl: float
    ) -> Lease | None:
        return await self._run(  # type: ignore[no-any-return]
            lambda: ops.acquire_lease(self.sql, tenant, session_id, owner, ttl), tx=False
        )

    async def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        return await self._run(  # type: ignore[no-any-return]
            lambda: ops.release_lease(self.sql, tenant, session_id, token), tx=False
        )

    async def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        await self._run(lambda: ops.rewrite_bodies(self.sql, tenant, session_id, rows), tx=True)

    async def tenants(self) -> list[str]:
        return await self._run(lambda: ops.tenants(self.sql), tx=False)  # type: ignore[no-any-return]
