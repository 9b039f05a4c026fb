"""Turn leases an outage left held, released once the store reaches its backend again.

A turn takes its session's lease, then releases it when it ends. A database restart can cut
either step: the release fails (the lease stays held), or the acquire fails after the database
granted it (the reply was lost: the lease is held by an owner nobody knows). Either way every
turn on that session would wait, then fail, until the lease's TTL ran out (two minutes on the
server) although the database was back. A store keeps both kinds here and settles them the
next time it takes a lease: a release by token, and for a lost acquire, the same owner takes
the lease again for a moment (acquiring is re-entrant per owner) and releases it.

Releasing is fenced by the lease's token, so a late release never frees a lease someone else
took since. An acquire that raised is treated as abandoned: retry with a new owner (as
``Memory.turn`` does).
"""

from __future__ import annotations

from collections import deque
from typing import Any

from chatkeep.errors import StoreUnavailable

Item = tuple[str, str, int | str]  # tenant, session id, token to release (or owner, if lost)
PROBE_TTL = 1.0  # seconds a lost acquire's owner holds the lease again before releasing it


class HeldLeases:
    """Leases to settle later, oldest first; bounded (they expire by TTL anyway)."""

    def __init__(self, limit: int = 1024) -> None:
        self._items: deque[Item] = deque(maxlen=limit)

    def __len__(self) -> int:
        return len(self._items)

    def release_failed(self, tenant: str, session_id: str, token: int) -> None:
        self._items.append((tenant, session_id, token))

    def acquire_failed(self, tenant: str, session_id: str, owner: str) -> None:
        self._items.append((tenant, session_id, owner))

    def _next(self) -> Item | None:
        try:
            return self._items.popleft()
        except IndexError:  # emptied by another thread or task meanwhile
            return None

    def drain(self, backend: Any) -> None:
        """Settle what is held; stop (keeping the rest) at the first failure."""
        while (item := self._next()) is not None:
            tenant, session_id, held = item
            try:
                if isinstance(held, str):
                    lease = backend.acquire_lease(tenant, session_id, held, PROBE_TTL)
                    if lease is None:
                        continue  # someone else holds it: that acquire was never granted
                    held = lease.token
                backend.release_lease(tenant, session_id, held)
            except StoreUnavailable:
                self._items.appendleft(item)
                return

    async def drain_async(self, backend: Any) -> None:
        """The async twin of :meth:`drain`."""
        while (item := self._next()) is not None:
            tenant, session_id, held = item
            try:
                if isinstance(held, str):
                    lease = await backend.acquire_lease(tenant, session_id, held, PROBE_TTL)
                    if lease is None:
                        continue
                    held = lease.token
                await backend.release_lease(tenant, session_id, held)
            except StoreUnavailable:
                self._items.appendleft(item)
                return


__all__ = ["PROBE_TTL", "HeldLeases", "Item"]
