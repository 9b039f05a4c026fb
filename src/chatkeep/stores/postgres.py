"""``postgresql://`` (or ``postgres://``): the scale-out backend (psycopg 3 + psycopg_pool).

Many app servers on many machines share one PostgreSQL. Every operation lives, sans IO, in
:mod:`chatkeep.stores.postgres_ops`; this module runs it on a pooled connection, and
:mod:`chatkeep.stores.postgres_async` is its async twin.

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

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from chatkeep.errors import StoreFull, StoreUnavailable
from chatkeep.stores import postgres_ops as ops
from chatkeep.stores.base import UNSET, NewRow, Rewrite, _Unset
from chatkeep.stores.postgres_connect import LastError, connection_class
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


def unavailable(url: str, exc: BaseException) -> StoreUnavailable:
    """The chatkeep error for a driver or pool failure on ``url`` (already redacted)."""
    if isinstance(exc, PoolTimeout):
        why = "no connection within pool_timeout (server down or pool exhausted)"
    elif isinstance(exc, pg_errors.QueryCanceled):
        why = "the statement ran past statement_timeout"
    else:
        why = type(exc).__name__
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, pg_errors.DiskFull | pg_errors.OutOfMemory):
        return StoreFull(
            f"PostgreSQL store {url}: the server is out of disk space or memory: {detail}"
        )
    return StoreUnavailable(f"PostgreSQL store {url}: {why}: {detail}")


def is_idempotency_race(exc: BaseException) -> bool:
    diag = getattr(exc, "diag", None)
    return isinstance(exc, pg_errors.UniqueViolation) and "idempotency" in str(
        getattr(diag, "constraint_name", "") or ""
    )


class PostgresBackend:
    scheme = "postgresql"
    ephemeral = False

    def __init__(self, url: str, redacted: str) -> None:
        self.url = redacted
        self.options = parse_url(url, redacted)
        self.sql = Sql(self.options.schema)
        self._pool: ConnectionPool[Any] | None = None
        self._pid = os.getpid()
        # Pools inherited across fork(): kept referenced and never closed, since closing them
        # would end the parent's sessions on the sockets both processes share.
        self._inherited: list[ConnectionPool[Any]] = []

    # -- running operations ----------------------------------------------------------------
    @staticmethod
    def _drive(conn: psycopg.Connection[Any], op: ops.Op) -> Any:
        cur = conn.cursor(binary=True)
        try:
            q = next(op)
            while True:
                cur.execute(q.query, q.params)
                if q.fetch == "all":
                    res: Any = cur.fetchall()
                elif q.fetch == "one":
                    res = cur.fetchone()
                elif q.fetch == "rowcount":
                    res = cur.rowcount
                else:
                    res = None
                q = op.send(res)
        except StopIteration as stop:
            return stop.value
        finally:
            cur.close()

    def _run(self, make: Callable[[], ops.Op], *, tx: bool) -> Any:
        if self._pid != os.getpid() and self._pool is not None:
            self._inherited.append(self._pool)  # forked: never touch the parent's connections
            self._pool = self._new_pool()
        pool = self._pool
        if pool is None:
            raise StoreUnavailable(f"PostgreSQL store {self.url} is not open")
        try:
            # getconn/putconn rather than pool.connection(): that one also runs the
            # connection's own commit on the way out, a no-op on our autocommit connections
            # that still costs a driver call per operation. putconn replaces a broken
            # connection and rolls back one left in a transaction, as connection() does.
            conn = pool.getconn()
            try:
                if not tx:
                    return self._drive(conn, make())
                with conn.transaction():
                    return self._drive(conn, make())
            finally:
                pool.putconn(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            if is_idempotency_race(exc):
                raise
            if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, PoolTimeout):
                self._recheck(pool)
            raise unavailable(self.url, exc) from exc

    @staticmethod
    def _recheck(pool: ConnectionPool[Any]) -> None:
        """After a connection broke, drop the other idle ones that broke with it, so the next
        call gets a live connection (or a clear error) instead of another dead one."""
        try:
            pool.check()
        except Exception:  # the next call reports the outage itself
            pass

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        self._pool = self._new_pool()
        try:
            self._run(lambda: ops.migrate(self.sql), tx=True)
        except BaseException:
            self.close()
            raise

    def _new_pool(self) -> ConnectionPool[Any]:
        o = self.options
        self._pid = os.getpid()
        last = LastError()  # the reason, which the pool's timeout lacks
        pool: ConnectionPool[Any] = ConnectionPool(
            o.conninfo,
            min_size=o.min_size,
            max_size=o.max_size,
            timeout=o.pool_timeout,
            reconnect_timeout=o.reconnect_timeout,
            kwargs=o.connect_kwargs(),
            open=False,
            name=f"chatkeep:{o.schema}",
            connection_class=connection_class(last),  # keeps why connecting failed
        )
        try:
            pool.open(wait=o.min_size > 0, timeout=o.connect_timeout)
        except PoolTimeout as exc:
            pool.close()
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self.url} within {o.connect_timeout:g}s "
                f"(connect_timeout){last.explain()}"
            ) from exc
        return pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None and self._pid != os.getpid():
            self._inherited.append(pool)  # the parent's: leave its sessions alone
        elif pool is not None:
            pool.close()

    def bind_tokenizer(self, name: str) -> None:
        self._run(lambda: ops.bind_tokenizer(self.sql, name, self.url), tx=False)

    # -- primitives --------------------------------------------------------------------------
    def append(
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
            done = self._run(
                lambda: ops.append_fast(s, tenant, session_id, rows, expect_last_seq), tx=False
            )
            if done is not None:
                return done  # type: ignore[no-any-return]
        for attempt in (1, 2):
            try:
                return self._run(  # type: ignore[no-any-return]
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

    def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        return self._run(  # type: ignore[no-any-return]
            lambda: ops.read(self.sql, tenant, session_id, after_seq, limit, newest), tx=False
        )

    def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        return self._run(  # type: ignore[no-any-return]
            lambda: ops.window(self.sql, tenant, session_id, budget, pin_system, reserve),
            tx=False,
        )

    def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        return self._run(lambda: ops.pop(self.sql, tenant, session_id), tx=True)  # type: ignore[no-any-return]

    def clear(self, tenant: str, session_id: str) -> int:
        return self._run(lambda: ops.clear(self.sql, tenant, session_id), tx=True)  # type: ignore[no-any-return]

    def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult:
        return self._run(  # type: ignore[no-any-return]
            lambda: ops.replace(self.sql, tenant, session_id, rows, expect_last_seq), tx=True
        )

    def delete(self, tenant: str, session_id: str) -> bool:
        return self._run(lambda: ops.delete(self.sql, tenant, session_id), tx=True)  # type: ignore[no-any-return]

    def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        return self._run(  # type: ignore[no-any-return]
            lambda: ops.sessions(self.sql, tenant, prefix, limit, cursor), tx=False
        )

    def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        return self._run(lambda: ops.info(self.sql, tenant, session_id), tx=False)  # type: ignore[no-any-return]

    def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        return self._run(  # type: ignore[no-any-return]
            lambda: ops.update_session(self.sql, tenant, session_id, metadata, expires_at),
            tx=True,
        )

    def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        return self._run(lambda: ops.get_summary(self.sql, tenant, session_id), tx=False)  # type: ignore[no-any-return]

    def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        return self._run(  # type: ignore[no-any-return]
            lambda: ops.put_summary(self.sql, tenant, session_id, text, covers_through_seq, tokens),
            tx=True,
        )

    def purge_expired(self, now: datetime) -> int:
        return self._run(lambda: ops.purge_expired(self.sql, now), tx=True)  # type: ignore[no-any-return]

    def erase(self, tenant: str) -> int:
        return self._run(lambda: ops.erase(self.sql, tenant), tx=True)  # type: ignore[no-any-return]

    def acquire_lease(self, tenant: str, session_id: str, owner: str, ttl: float) -> Lease | None:
        return self._run(  # type: ignore[no-any-return]
            lambda: ops.acquire_lease(self.sql, tenant, session_id, owner, ttl), tx=False
        )

    def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        return self._run(  # type: ignore[no-any-return]
            lambda: ops.release_lease(self.sql, tenant, session_id, token), tx=False
        )

    def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        self._run(lambda: ops.rewrite_bodies(self.sql, tenant, session_id, rows), tx=True)

    def tenants(self) -> list[str]:
        return self._run(lambda: ops.tenants(self.sql), tx=False)  # type: ignore[no-any-return]
