"""OpenAI Agents SDK: ``SQLiteSession`` on a database file.

A fresh ``SQLiteSession(sid, db_path)`` per request (its docs build one per user), closed after
the call; the calls run on one long-lived event loop, as in an async server. Its engine is
sqlite3 in WAL mode (what ``_configure_connection`` sets) at the default ``synchronous``
(read back from its connection). It has no token window: the window workload asks for
``get_items(limit=k)``, ``k`` = the number of messages chatkeep's 3,000-token window holds.
Histories are filled with one ``add_items`` call (one ``executemany``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bench.peers.c_chatkeep import _item
from bench.peers.contenders import Contender, sqlite_pragmas


class AgentsSQLiteSession(Contender):
    name, family, backend = "Agents SQLiteSession", "agents", "sqlite"
    max_history = 100_000
    note = "SQLiteSession(sid, db_path) per request: add_items / get_items(limit=k); close()"

    def open(self) -> None:
        from agents import SQLiteSession

        self.loop = asyncio.new_event_loop()
        self.path = str(self.tmp / f"{self.tag}.db")
        probe = SQLiteSession("probe", self.path)
        self.durability = sqlite_pragmas(probe._get_connection())
        probe.close()

    def _call(self, sid: str, fn: Any) -> Any:
        from agents import SQLiteSession

        session = SQLiteSession(sid, self.path)
        try:
            return self.loop.run_until_complete(fn(session))
        finally:
            session.close()

    def fill(self, sid: str, msgs: list[tuple[str, str]]) -> None:
        items = [_item(r, t) for r, t in msgs]
        self._call(sid, lambda s: s.add_items(items))

    def append(self, sid: str, text: str) -> None:
        self._call(sid, lambda s: s.add_items([_item("user", text)]))

    def window(self, sid: str, k: int) -> int:
        return len(self._call(sid, lambda s: s.get_items(limit=k)))

    def close(self) -> None:
        self.loop.close()


CONTENDERS = [AgentsSQLiteSession]
