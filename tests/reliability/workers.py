"""The worker programs of the crash and concurrency tests: each runs in a process of its own.

    python -m tests.reliability.workers crash URL ACKS SEED [RETRY_JSON]
    python -m tests.reliability.workers soak URL ACKS SEED THREADS SECONDS

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

import json
import os
import random
import sys
import threading
import time
import traceback
from collections import Counter
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
    acks(
        t="ok",
        op="append",
        sid=op["sid"],
        k=op["k"],
        first=result.first_seq,
        last=result.last_seq,
        rep=result.replayed,
    )
    return result


def do_turn(store: chatkeep.Store, acks: Acks, op: dict[str, Any], *, lease_ttl: float) -> None:
    """A Memory.turn with an idempotency key and the offline responder as the LLM; the reply
    records the last seq the turn saw, so the checker can prove nothing slipped in between."""
    acks(t="do", **op)
    key = op["k"]
    memory = chatkeep.Memory(op["sid"], store=store, lease_ttl=lease_ttl, lease_timeout=60)
    question = Message.from_dict(
        {"role": "user", "content": f"{key}/0", "metadata": {"k": key, "j": 0, "n": 2, "big": 0}}
    )
    with memory.turn(question, idempotency_key=key) as turn:
        assert turn.window is not None
        answer = OfflineResponder().reply(turn.messages)
        meta = {"k": key, "j": 1, "n": 2, "big": 0, "after": turn.window.last_seq}
        turn.reply(f"{key}/1", metadata={**meta, "llm": answer[:40]})
    result = turn.result
    assert result is not None
    acks(
        t="ok",
        op="turn",
        sid=op["sid"],
        k=key,
        first=result.first_seq,
        last=result.last_seq,
        rep=result.replayed,
    )


def do_replace(store: chatkeep.Store, acks: Acks, op: dict[str, Any]) -> None:
    acks(t="do", **op)
    store.replace(op["sid"], generation(op["g"], op["n"]))
    acks(t="ok", op="replace", sid=op["sid"], g=op["g"])


# -- the crash worker: one writer, killed by the parent at a random moment ----------------------


def crash(url: str, ack_path: str, seed: int, retry: str = "") -> None:
    rng = random.Random(seed)
    acks = Acks(ack_path)
    big_share = 0.08 if url.startswith("file:") else 0.02
    with chatkeep.open_store(url) as store:
        if retry:  # what the killed writer had in flight: a client retrying with the same key
            op = json.loads(retry)
            if op["op"] == "append":
                do_append(store, acks, {**op, "retry": True})
            else:
                do_turn(store, acks, {**op, "retry": True}, lease_ttl=1.0)
        for i in range(1_000_000):
            key = f"s{seed}-{i}"
            pick = rng.random()
            if pick < 0.55:
                big = BIG if rng.random() < big_share else 0
                sid = rng.choice(APPEND_SESSIONS)
                n = rng.randint(1, 3)
                do_append(store, acks, dict(op="append", sid=sid, k=key, n=n, big=big))
            elif pick < 0.8:
                # a short lease: a writer killed mid-turn must not block the next one for long
                do_turn(store, acks, dict(op="turn", sid=TURN_SESSION, k=key), lease_ttl=1.0)
            else:
                do_replace(
                    store, acks, dict(op="replace", sid=REPLACE_SESSION, g=key, n=rng.randint(2, 6))
                )


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


class SoakThread:
    def __init__(self, store: chatkeep.Store, acks: Acks, name: str, seed: int) -> None:
        self.store, self.acks, self.name = store, acks, name
        self.rng = random.Random(seed)
        self.ops: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.sent: list[dict[str, Any]] = []  # appends to the append-only sessions, for retries
        self.i = 0

    def violation(self, what: str) -> None:
        self.acks(t="violation", what=what)
        self.errors["violation"] += 1

    def run(self, deadline: float) -> None:
        names, weights = zip(*OPS, strict=True)
        while time.monotonic() < deadline:
            kind = self.rng.choices(names, weights)[0]
            try:
                getattr(self, kind)()
                self.ops[kind] += 1
            except Exception as exc:  # classified, counted, never swallowed silently
                label = f"{kind}:{type(exc).__name__}"
                self.errors[label] += 1
                if (kind, type(exc).__name__) not in EXPECTED and len(self.samples) < 5:
                    self.samples.append(f"{label}: {exc}\n{traceback.format_exc()}")

    def key(self) -> str:
        self.i += 1
        return f"{self.name}-{self.i}"

    def any_session(self) -> str:
        return self.rng.choice(APPEND_SESSIONS + CHURN_SESSIONS)

    def append(self) -> None:
        op = dict(
            op="append", sid=self.any_session(), k=self.key(), n=self.rng.randint(1, 3), big=0
        )
        result = do_append(self.store, self.acks, op)
        if op["sid"] in APPEND_SESSIONS:
            self.sent.append({**op, "first": result.first_seq, "last": result.last_seq})

    def retry(self) -> None:
        """Send an acknowledged append again: an append-only session must answer with the
        original seqs and store nothing."""
        if not self.sent:
            return
        old = self.rng.choice(self.sent)
        op = {k: old[k] for k in ("op", "sid", "k", "n", "big")}
        result = self.store.append(op["sid"], batch(op["k"], op["n"]), idempotency_key=op["k"])
        again = (result.first_seq, result.last_seq)
        if not result.replayed or again != (old["first"], old["last"]):
            self.violation(
                f"retry of {op['k']} gave {again} replayed={result.replayed}, "
                f"first time {old['first']}..{old['last']}"
            )

    def window(self) -> None:
        w = self.store.window(self.any_session(), self.rng.randint(20, 400))
        seqs = [m.seq for m in w.messages]
        if seqs and (seqs != list(range(seqs[0], seqs[0] + len(seqs))) or seqs[-1] != w.last_seq):
            self.violation(f"window seqs {seqs} with last_seq {w.last_seq}")
        if w.messages and w.messages[0].role in ("assistant", "tool"):
            self.violation(f"window starts on {w.messages[0].role} at seq {seqs[0]}")
        if w.summary is not None and w.summary.covers_through_seq > w.last_seq:
            self.violation(f"summary covers {w.summary.covers_through_seq} > {w.last_seq}")

    def read(self) -> None:
        sid = self.any_session()
        problems = parse_rows(sid, self.store.read(sid)).problems
        for problem in problems:
            self.violation(f"read of {sid}: {problem}")

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
        op = dict(
            op="replace",
            sid=self.rng.choice(CHURN_SESSIONS),
            g=self.key(),
            n=self.rng.randint(2, 6),
        )
        do_replace(self.store, self.acks, op)

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
    ops = sum((w.ops for w in workers), Counter())
    errors = sum((w.errors for w in workers), Counter())
    samples = [s for w in workers for s in w.samples]
    acks(t="done", ops=dict(ops), errors=dict(errors), samples=samples[:5])


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "crash":
        crash(args[0], args[1], int(args[2]), args[3] if len(args) > 3 else "")
    elif mode == "soak":
        soak(args[0], args[1], int(args[2]), int(args[3]), float(args[4]))
    else:
        raise SystemExit(f"unknown mode {mode!r}; expected crash or soak")
