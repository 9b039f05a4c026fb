"""An async turn cancelled at any moment releases the session's lease at once.

FastAPI / Starlette cancel through anyio cancel scopes (a client that disconnects from a
streaming response, ``anyio.fail_after`` around the LLM call), and a cancelled scope cancels
*every* await inside it, the lease release in ``AsyncTurn.__aexit__`` included. Regression: on
every backend whose async calls really await (SQLite and files on threads, PostgreSQL, Redis)
that release was cancelled too, and the session stayed locked for ``lease_ttl`` (60 s by
default): the user's next message waited a minute, or got a 409 under ``lease_policy="reject"``.
A turn cancelled while its lease was being granted lost it the same way, on every backend.
"""

from __future__ import annotations

import asyncio
import random

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
        assert await lease_comes_free(store, "s"), "the cancelled turn kept the session's lease"
        assert await store.read("s") == []  # and stored nothing


async def lease_comes_free(store: chatkeep.AsyncStore, sid: str) -> bool:
    """The release may finish just after the cancelled caller left: allow 2 s, not 60."""
    for _ in range(200):
        if await store.acquire_lease(sid, owner="next request", ttl=5) is not None:
            return True
        await asyncio.sleep(0.01)
    return False


async def turns_cancelled_early_leave_no_lease(url: str, seed: int) -> list[int]:
    """Turns cancelled 0-4 ms in (mostly while the lease is being granted or the window read);
    the numbers of those whose session stayed locked."""
    rng = random.Random(seed)
    locked = []
    async with await chatkeep.open_async_store(url) as store:
        for n in range(60):
            memory = chatkeep.AsyncMemory(f"s{n}", store=store, lease_ttl=60)
            with anyio.move_on_after(rng.uniform(0, 0.004)):
                async with memory.turn("hi"):
                    await asyncio.sleep(30)
            if not await lease_comes_free(store, f"s{n}"):
                locked.append(n)
    return locked


@pytest.mark.parametrize("backend", ["sqlite", "file", "postgres", "redis"])
@pytest.mark.parametrize("cancel", ["anyio", "asyncio"])
def test_a_cancelled_async_turn_releases_its_lease(url: str, cancel: str) -> None:
    anyio.run(cancelled_turn_leaves_the_lease_free, url, cancel)


@pytest.mark.parametrize("backend", ["sqlite", "file", "postgres", "redis"])
def test_an_async_turn_cancelled_while_taking_its_lease_gives_it_back(url: str, seed: int) -> None:
    locked = anyio.run(turns_cancelled_early_leave_no_lease, url, seed)
    assert locked == [], f"sessions left locked: {locked} (CHATKEEP_RELIABILITY_SEED={seed})"
