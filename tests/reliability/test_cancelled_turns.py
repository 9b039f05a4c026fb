"""An async turn cancelled while it waits on the LLM releases the session's lease at once.

FastAPI / Starlette cancel through anyio cancel scopes (a client that disconnects from a
streaming response, ``anyio.fail_after`` around the LLM call), and a cancelled scope cancels
*every* await inside it, the lease release in ``AsyncTurn.__aexit__`` included. Regression: on
every backend whose async calls really await (SQLite and files on threads, PostgreSQL, Redis)
that release was cancelled too, and the session stayed locked for ``lease_ttl`` (60 s by
default): the user's next message waited a minute, or got a 409 under ``lease_policy="reject"``.
"""

from __future__ import annotations

import asyncio

import anyio
import pytest

import chatkeep


async def cancelled_turn_leaves_the_lease_free(url: str, cancel: str) -> None:
    async with await chatkeep.open_async_store(url) as store:
        memory = chatkeep.AsyncMemory("s", store=store, lease_ttl=60, lease_policy="reject")

        async def turn() -> None:
            async with memory.turn("hi") as t:
                await asyncio.sleep(30)  # the LLM call, abandoned
                t.reply("never")

        if cancel == "anyio":
            with anyio.move_on_after(0.2) as scope:
                await turn()
            assert scope.cancelled_caught
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(turn(), 0.2)
        # the release may finish just after the cancelled caller left: allow 2 s, not 60
        for _ in range(200):
            if (lease := await store.acquire_lease("s", owner="next", ttl=5)) is not None:
                break
            await asyncio.sleep(0.01)
        assert lease is not None, "the cancelled turn kept the session's lease"
        assert await store.read("s") == []  # and stored nothing


@pytest.mark.parametrize("backend", ["sqlite", "file", "postgres", "redis"])
@pytest.mark.parametrize("cancel", ["anyio", "asyncio"])
def test_a_cancelled_async_turn_releases_its_lease(url: str, cancel: str) -> None:
    anyio.run(cancelled_turn_leaves_the_lease_free, url, cancel)
