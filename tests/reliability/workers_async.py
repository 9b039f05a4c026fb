"""The async flavour of the crash and soak workers: the same operations, reports and checks as
:mod:`tests.reliability.workers`, made through :func:`chatkeep.open_async_store`,
:class:`chatkeep.AsyncStore` and :class:`chatkeep.AsyncMemory` (the code a FastAPI app runs:
``stores/postgres_async.py``, ``stores/redis_async.py``, and SQLite / files offloaded to threads
by ``stores/threaded.py``).

    python -m tests.reliability.workers crash-async URL ACKS SEED [RETRY_JSON]
    python -m tests.reliability.workers soak-async URL ACKS SEED TASKS SECONDS

The soak process runs TASKS coroutines on one event loop (where the sync worker runs threads),
so its operations interleave at every ``await`` on one shared store, as an app's requests do.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from tests.reliability.ledger import CHURN_SESSIONS, batch, generation
from tests.reliability.workers import (
    CRASH_LEASE_TTL,
    Acks,
    SoakBase,
    ack_append,
    ack_turn,
    crash_plan,
    question,
    reply,
    report_done,
)

import chatkeep


async def do_append(
    store: chatkeep.AsyncStore, acks: Acks, op: dict[str, Any]
) -> chatkeep.AppendResult:
    acks(t="do", **op)
    messages = batch(op["k"], op["n"], op["big"])
    result = await store.append(op["sid"], messages, idempotency_key=op["k"])
    ack_append(acks, op, result)
    return result


async def do_turn(
    store: chatkeep.AsyncStore, acks: Acks, op: dict[str, Any], *, lease_ttl: float
) -> None:
    """An AsyncMemory.turn with an idempotency key (see :func:`workers.do_turn`)."""
    acks(t="do", **op)
    key = op["k"]
    memory = chatkeep.AsyncMemory(op["sid"], store=store, lease_ttl=lease_ttl, lease_timeout=60)
    async with memory.turn(question(key), idempotency_key=key) as turn:
        reply(turn, key)
    ack_turn(acks, op, turn.result)


async def do_replace(store: chatkeep.AsyncStore, acks: Acks, op: dict[str, Any]) -> None:
    acks(t="do", **op)
    await store.replace(op["sid"], generation(op["g"], op["n"]))
    acks(t="ok", op="replace", sid=op["sid"], g=op["g"])


async def crash(url: str, ack_path: str, seed: int, retry: str = "") -> None:
    acks = Acks(ack_path)
    async with await chatkeep.open_async_store(url) as store:
        ops = [json.loads(retry) | {"retry": True}] if retry else []
        for op in itertools.chain(ops, crash_plan(url, seed)):
            if op["op"] == "append":
                await do_append(store, acks, op)
            elif op["op"] == "turn":
                await do_turn(store, acks, op, lease_ttl=CRASH_LEASE_TTL)
            else:
                await do_replace(store, acks, op)


class SoakTask(SoakBase):
    """One coroutine of the async soak worker: :class:`workers.SoakThread`'s operations,
    awaited."""

    def __init__(self, store: chatkeep.AsyncStore, acks: Acks, name: str, seed: int) -> None:
        super().__init__(acks, name, seed)
        self.store = store

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            kind = self.pick()
            try:
                await getattr(self, kind)()
                self.ops[kind] += 1
            except Exception as exc:
                self.failed(kind, exc)

    async def append(self) -> None:
        op = self.append_op()
        self.sent_append(op, await do_append(self.store, self.acks, op))

    async def retry(self) -> None:
        if (old := self.retry_op()) is None:
            return
        messages = batch(old["k"], old["n"])
        self.check_retry(
            old, await self.store.append(old["sid"], messages, idempotency_key=old["k"])
        )

    async def window(self) -> None:
        self.check_window(await self.store.window(self.any_session(), self.rng.randint(20, 400)))

    async def read(self) -> None:
        sid = self.any_session()
        self.check_read(sid, await self.store.read(sid))

    async def turn(self) -> None:
        op = dict(op="turn", sid=self.any_session(), k=self.key())
        await do_turn(self.store, self.acks, op, lease_ttl=30.0)

    async def summary(self) -> None:
        sid = self.any_session()
        info = await self.store.info(sid)
        last = info.last_seq if info else 0
        await self.store.put_summary(sid, f"summary by {self.name}", self.rng.randint(0, last))

    async def clear(self) -> None:
        await self.store.clear(self.rng.choice(CHURN_SESSIONS))

    async def delete(self) -> None:
        await self.store.delete(self.rng.choice(CHURN_SESSIONS))

    async def replace(self) -> None:
        await do_replace(self.store, self.acks, self.replace_op())

    async def info(self) -> None:
        await self.store.info(self.any_session())


async def soak(url: str, ack_path: str, seed: int, tasks: int, seconds: float) -> None:
    acks = Acks(ack_path)
    async with await chatkeep.open_async_store(url) as store:
        acks(t="ready")
        deadline = time.monotonic() + seconds
        workers = [SoakTask(store, acks, f"s{seed}a{n}", seed * 1000 + n) for n in range(tasks)]
        await asyncio.gather(*(w.run(deadline) for w in workers))
    report_done(acks, workers, "async")
