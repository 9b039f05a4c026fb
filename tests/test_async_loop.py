"""The async twin never blocks the event loop, even while SQLite waits on a lock."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import chatkeep
from chatkeep import Message


def test_append_waiting_on_a_lock_leaves_the_loop_free(tmp_path: Path) -> None:
    path = tmp_path / "x.db"

    async def main() -> list[str]:
        events: list[str] = []
        async with await chatkeep.open_async_store(f"sqlite:///{path}") as store:
            blocker = sqlite3.connect(path, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            append = asyncio.create_task(store.append("s", Message.user("waits for the lock")))

            async def other_request() -> None:
                for _ in range(5):
                    await asyncio.sleep(0.01)
                events.append("other request served")

            await other_request()  # runs while the append is stuck behind the lock
            assert not append.done()
            events.append("lock released")
            blocker.execute("ROLLBACK")
            blocker.close()
            result = await append
            events.append(f"append stored seq {result.first_seq}")
        return events

    assert asyncio.run(main()) == [
        "other request served",
        "lock released",
        "append stored seq 1",
    ]
