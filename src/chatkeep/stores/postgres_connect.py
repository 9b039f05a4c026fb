"""Why a PostgreSQL store could not open: the reason behind psycopg_pool's timeout.

psycopg_pool connects in the background and retries; when ``open(wait=True)`` runs out of time
its ``PoolTimeout`` says only that, while the reason (refused, bad password, PgBouncer refusing
the startup options ...) went to its log. :func:`connect_errors` keeps the last one logged for
one pool, so the store's error can say it, with a hint when a PgBouncer is in the way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

_POOL_LOG = logging.getLogger("psycopg.pool")
_PGBOUNCER = "unsupported startup parameter"


class ConnectErrors(logging.Handler):
    """The last "error connecting" psycopg_pool logged for the pool named ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.WARNING)
        self.name = name
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if (
            isinstance(args, tuple)
            and len(args) == 2
            and args[0] == self.name
            and str(record.msg).startswith("error connecting")
        ):
            self.last = " ".join(str(args[1]).split())

    def explain(self) -> str:
        """The end of the store's error: the reason logged (and what to do about PgBouncer),
        or the usual question when none was."""
        if self.last is None:
            return "; is the server running and reachable?"
        if _PGBOUNCER in self.last:
            return f": {self.last}; behind PgBouncer? add ?pgbouncer=true to the URL"
        return f": {self.last}"


@contextmanager
def connect_errors(name: str) -> Iterator[ConnectErrors]:
    """Collects the pool ``name``'s connection errors while the block runs."""
    handler = ConnectErrors(name)
    _POOL_LOG.addHandler(handler)
    try:
        yield handler
    finally:
        _POOL_LOG.removeHandler(handler)
