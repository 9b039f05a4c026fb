"""The worker programs of the crash and concurrency tests: each runs in a process of its own.

    python -m tests.reliability.workers crash URL ACKS SEED [RETRY_JSON]
    python -m tests.reliability.workers soak URL ACKS SEED THREADS SECONDS

``crash-async`` and ``soak-async`` take the same arguments and do the same operations through
:class:`chatkeep.AsyncStore` / :class:`chatkeep.AsyncMemory` (see :mod:`.workers_async`): the
soak runs THREADS asyncio tasks on one event loop instead of THREADS threads.

Every operation is reported to the ``ACKS`` file, one JSON line per ``os.write`` on an
``O_APPEND`` descriptor: ``{"t": "do", ...}`` just before the store is called, ``{"t": "ok",
...}`` once the call returned (that line is the acknowledgement). The page cache outlives a
SIGKILLed process, so every line the worker wrote is there for the parent to read; a last line
without its newline was cut by the kill and does not count.

What a message holds is a function of its key (see :func:`~tests.reliability.ledger.batch`),
so the checkers in :mod:`tests.reliability.ledger` can tell from the stored rows alone which
operation wrote them, whether it is whole, and whether its content is intact.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

from tests.reliability.ledger import (
    APPEND_SESSIONS,
    BIG,
    CHURN_SESSIONS,
    REPLACE_SESSION,
    TURN_SESSION,
    batch,
    generation,
    parse_rows,
)

import chatkeep
from chatkeep import Message
from chatkeep.server.llm import OfflineResponder


class Acks:
    """The worker's report: one ``os.write`` per line on an O_APPEND descriptor."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.lock = threading.Lock()

    def __call__(self, **record: Any) -> None:
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        with self.lock:
            os.write(self.fd, line)


# -- operations --------------------------------------------------------------------------------


def do_append(store: chatkeep.Store, acks: Acks, op: dict[str, Any]) -> chatkeep.AppendResult:
    acks(t="do", **op)
    result = store.append(op["sid"], batch(op["k"], op["n"], op["big"]), idempotency_key=op["k"])
    ack_append(acks, op, result)
    return result


def ack_append(acks: Acks, op: dict[str, Any], result: chatkeep.AppendResult) -> None:
    acks(
        t="ok",
        op="append",
        sid=op["sid"],
        k=op["k"],
        first=result.first_seq,
        last=result.last_seq,
        rep=result.replayed,
    )


def do_turn(store: chatkeep.Store, acks: Acks, op: dict[str, Any], *, lease_ttl: float) -> None:
    """A Memory.turn with an idempotency key and the offline responder as the LLM; the reply
    records the last seq the turn saw, so the checker can prove nothing slipped in between."""
    acks(t="do", **op)
    key = op["k"]
    memory = chatkeep.Memory(op["sid"], store=store, lease_ttl=lease_ttl, lease_timeout=60)
    with memory.turn(question(key), idempotency_key=key) as turn:
        reply(turn, key)
    ack_turn(acks, op, turn.result)


def question(key: str) -> Message:
    """The user message of turn ``key``."""
    return Message.from_dict(
        {"role": "user", "content": f"{key}/0", "metadata": {"k": key, "j": 0, "n": 2, "big": 0}}
    )


def reply(turn: chatkeep.Turn | chatkeep.AsyncTurn, key: str) -> None:
    """Answer turn ``key`` with the offline responder, recording the last seq it saw."""
    assert turn.window is not None
    answer = OfflineResponder().reply(turn.messages)
    meta = {"k": key, "j": 1, "n": 2, "big": 0, "after": turn.window.last_seq}
    turn.reply(f"{key}/1", metadata={**meta, "llm": answer[:40]})


def ack_turn(acks: Acks, op: dict[str, Any], result: chatkeep.AppendResult | None) -> None:
    assert result is not None
    acks(
        t="ok",
        op="turn",
        sid=op["sid"],
        k=op["k"],
        first=result.first_seq,
        last=result.last_seq,
        rep=result.replayed,
    )


def do_replace(store: chatkeep.Store, acks: Acks, op: dict[str, Any]) -> None:
    acks(t="do", **op)
    store.replace(op["sid"], generation(op["g"], op["n"]))
    acks(t="ok", op="replace", sid=op["sid"], g=op["g"])


# -- the crash worker: one writer, killed by the parent at a random moment ----------------------


def crash_plan(url: str, seed: int) -> Iterator[dict[str, Any]]:
    """The operations of a crash writer, in order (the same for both flavours)."""
    rng = random.Random(seed)
    big_share = 0.08 if url.startswith("file:") else 0.02
    for i in range(1_000_000):
        key = f"s{seed}-{i}"
        pick = rng.random()
        if pick < 0.55:
            big = BIG if rng.random() < big_share else 0
            sid = rng.choice(APPEND_SESSIONS)
            yield dict(op="append", sid=sid, k=key, n=rng.randint(1, 3), big=big)
        elif pick < 0.8:
            yield dict(op="turn", sid=TURN_SESSION, k=key)
        else:
            yield dict(op="replace", sid=REPLACE_SESSION, g=key, n=rng.randint(2, 6))


#: a short lease: a writer killed mid-turn must not block the next one for long
CRASH_LEASE_TTL = 1.0


def crash(url: str, ack_path: str, seed: int, retry: str = "") -> None:
    acks = Acks(ack_path)
    with chatkeep.open_store(url) as store:
        ops = [json.loads(retry) | {"retry": True}] if retry else []
        for op in itertools.chain(ops, crash_plan(url, seed)):
            if op["op"] == "append":
                do_append(store, acks, op)
            elif op["op"] == "turn":
                do_turn(store, acks, op, lease_ttl=CRASH_LEASE_TTL)
            else:
                do_replace(store, acks, op)


# -- the soak worker: threads doing everything at once on shared sessions ----------------------

#: errors that are the documented answer to a race, not a failure: (operation, class) -> why
EXPECTED = {
    ("turn", "ConflictError"): "a plain append landed between the turn's window and its append",
    ("summary", "InvalidInput"): "the session was cleared between reading its last seq and "
    "putting the summary",
}

OPS = (  # (operation, weight)
    ("append", 34),
    ("retry", 6),
    ("window", 16),
    ("read", 8),
    ("turn", 14),
    ("summary", 6),
    ("clear", 4),
    ("delete", 3),
    ("replace", 6),
    ("info", 3),
)


class SoakBase:
    """What both flavours of soak worker share: the random picks, the keys, the checks made
    on what comes back, and the counts."""

    def __init__(self, acks: Acks, name: str, seed: int) -> None:
        self.acks, self.name = acks, name
        self.rng = random.Random(seed)
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.sent: list[dict[str, Any]] = []  # appends to the append-only sessions, for retries
        self.i = 0

    def violation(self, what: str) -> None:
        self.acks(t="violation", what=what)
        self.errors["violation"] += 1

    def pick(self) -> str:
        names, weights = zip(*OPS, strict=True)
        return self.rng.choices(names, weights)[0]

    def failed(self, kind: str, exc: Exception) -> None:
        """Count an exception (classified, never swallowed silently)."""
        label = f"{kind}:{type(exc).__name__}"
        self.errors[label] += 1
        if (kind, type(exc).__name__) not in EXPECTED and len(self.samples) < 5:
            self.samples.append(f"{label}: {exc}\n{traceback.format_exc()}")

    def key(self) -> str:
        self.i += 1
        return f"{self.name}-{self.i}"

    def any_session(self) -> str:
        return self.rng.choice(APPEND_SESSIONS + CHURN_SESSIONS)

    def append_op(self) -> dict[str, Any]:
        return dict(
            op="append", sid=self.any_session(), k=self.key(), n=self.rng.randint(1, 3), big=0
        )

    def sent_append(self, op: dict[str, Any], result: chatkeep.AppendResult) -> None:
        if op["sid"] in APPEND_SESSIONS:
            self.sent.append({**op, "first": result.first_seq, "last": result.last_seq})

    def retry_op(self) -> dict[str, Any] | None:
        """An acknowledged append to send again (None before the first)."""
        if not self.sent:
            return None
        return self.rng.choice(self.sent)

    def check_retry(self, old: dict[str, Any], result: chatkeep.AppendResult) -> None:
        """An append-only session must answer a resend with the original seqs, storing
        nothing."""
        again = (result.first_seq, result.last_seq)
        if not result.replayed or again != (old["first"], old["last"]):
            self.violation(
                f"retry of {old['k']} gave {again} replayed={result.replayed}, "
                f"first time {old['first']}..{old['last']}"
            )

    def check_window(self, w: chatkeep.Window) -> None:
        seqs = [m.seq for m in w.messages]
        if seqs and (seqs != list(range(seqs[0], seqs[0] + len(seqs))) or seqs[-1] != w.last_seq):
            self.violation(f"window seqs {seqs} with last_seq {w.last_seq}")
        if w.messages and w.messages[0].role in ("assistant", "tool"):
            self.violation(f"window starts on {w.messages[0].role} at seq {seqs[0]}")
        if w.summary is not None and w.summary.covers_through_seq > w.last_seq:
            self.violation(f"summary covers {w.summary.covers_through_seq} > {w.last_seq}")

    def check_read(self, sid: str, rows: list[chatkeep.StoredMessage]) -> None:
        for problem in parse_rows(sid, rows).problems:
            self.violation(f"read of {sid}: {problem}")

    def replace_op(self) -> dict[str, Any]:
        sid = self.rng.choice(CHURN_SESSIONS)
        return dict(op="replace", sid=sid, g=self.key(), n=self.rng.randint(2, 6))

    def done(self) -> dict[str, Any]:
        return {"ops": self.ops, "errors": self.errors, "samples": self.samples}


class SoakThread(SoakBase):
    def __init__(self, store: chatkeep.Store, acks: Acks, name: str, seed: int) -> None:
        super().__init__(acks, name, seed)
        self.store = store

    def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            kind = self.pick()
            try:
                getattr(self, kind)()
                self.ops[kind] += 1
            except Exception as exc:
                self.failed(kind, exc)

    def append(self) -> None:
        op = self.append_op()
        self.sent_append(op, do_append(self.store, self.acks, op))

    def retry(self) -> None:
        """Send an acknowledged append again: an append-only session must answer with the
        original seqs and store nothing."""
        if (old := self.retry_op()) is None:
            return
        result = self.store.append(old["sid"], batch(old["k"], old["n"]), idempotency_key=old["k"])
        self.check_retry(old, result)

    def window(self) -> None:
        self.check_window(self.store.window(self.any_session(), self.rng.randint(20, 400)))

    def read(self) -> None:
        sid = self.any_session()
        self.check_read(sid, self.store.read(sid))

    def turn(self) -> None:
        sid = self.any_session()
        do_turn(self.store, self.acks, dict(op="turn", sid=sid, k=self.key()), lease_ttl=30.0)

    def summary(self) -> None:
        sid = self.any_session()
        info = self.store.info(sid)
        last = info.last_seq if info else 0
        self.store.put_summary(sid, f"summary by {self.name}", self.rng.randint(0, last))

    def clear(self) -> None:
        self.store.clear(self.rng.choice(CHURN_SESSIONS))

    def delete(self) -> None:
        self.store.delete(self.rng.choice(CHURN_SESSIONS))

    def replace(self) -> None:
        do_replace(self.store, self.acks, self.replace_op())

    def info(self) -> None:
        self.store.info(self.any_session())


def soak(url: str, ack_path: str, seed: int, threads: int, seconds: float) -> None:
    acks = Acks(ack_path)
    with chatkeep.open_store(url) as store:
        acks(t="ready")
        deadline = time.monotonic() + seconds
        workers = [SoakThread(store, acks, f"s{seed}t{n}", seed * 1000 + n) for n in range(threads)]
        pool = [threading.Thread(target=w.run, args=(deadline,)) for w in workers]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    report_done(acks, workers, "sync")


def report_done(acks: Acks, workers: Sequence[SoakBase], flavour: str) -> None:
    ops = sum((w.ops for w in workers), Counter())
    errors = sum((w.errors for w in workers), Counter())
    samples = [f"[{flavour}] {s}" for w in workers for s in w.samples]
    acks(t="done", flavour=flavour, ops=dict(ops), errors=dict(errors), samples=samples[:5])


def main(mode: str, args: list[str]) -> None:
    if mode in ("crash-async", "soak-async"):
        import asyncio

        from tests.reliability import workers_async

        if mode == "crash-async":
            asyncio.run(workers_async.crash(*args[:2], int(args[2]), *args[3:4]))
        else:
            asyncio.run(workers_async.soak(*args[:2], int(args[2]), int(args[3]), float(args[4])))
    elif mode == "crash":
        crash(args[0], args[1], int(args[2]), args[3] if len(args) > 3 else "")
    elif mode == "soak":
        soak(args[0], args[1], int(args[2]), int(args[3]), float(args[4]))
    else:
        raise SystemExit(f"unknown mode {mode!r}; expected crash, soak, crash-async, soak-async")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
