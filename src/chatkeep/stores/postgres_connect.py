"""Why a PostgreSQL store could not open: the reason behind psycopg_pool's timeout.

psycopg_pool connects in the background and retries; when ``open(wait=True)`` runs out of time
its ``PoolTimeout`` says only that, while the reason (refused, bad password, PgBouncer refusing
the startup options ...) went to its log, which the app may have silenced. Each pool is given
a connection class (psycopg_pool's ``connection_class``) that keeps the last connection error
in a :class:`LastError`, so the store's error can say it, with a hint when a PgBouncer is in
the way. Connections themselves behave exactly as psycopg's.
"""

from __future__ import annotations

from typing import Any

import psycopg

_PGBOUNCER = "unsupported startup parameter"


class LastError:
    """The last error one pool met while connecting."""

    __slots__ = ("error",)

    def __init__(self) -> None:
        self.error: str | None = None

    def keep(self, exc: BaseException) -> None:
        self.error = " ".join(str(exc).split()) or type(exc).__name__

    def explain(self) -> str:
        """The end of the store's error: the reason (and what to do about PgBouncer), or the
        usual question when no attempt failed yet."""
        if self.error is None:
            return "; is the server running and reachable?"
        if _PGBOUNCER in self.error:
            return f": {self.error}; behind PgBouncer? add ?pgbouncer=true to the URL"
        return f": {self.error}"


def connection_class(last: LastError) -> type[psycopg.Connection[Any]]:
    """A ``psycopg.Connection`` whose failed connects are kept in ``last``."""

    class Connection(psycopg.Connection[Any]):
        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            try:
                return super().connect(conninfo, **kwargs)
            except psycopg.Error as exc:
                last.keep(exc)
                raise

    Connection.__qualname__ = "Connection"  # for reprs in logs: not "<locals>"
    return Connection


def async_connection_class(last: LastError) -> type[psycopg.AsyncConnection[Any]]:
    """The async twin of :func:`connection_class`."""

    class AsyncConnection(psycopg.AsyncConnection[Any]):
        @classmethod
        async def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            try:
                return await super().connect(conninfo, **kwargs)
            except psycopg.Error as exc:
                last.keep(exc)
                raise

    AsyncConnection.__qualname__ = "AsyncConnection"
    return AsyncConnection
