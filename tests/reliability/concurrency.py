"""The concurrency soak: processes x threads doing everything at once on a few shared sessions.

Each process (``workers.soak``) runs threads that pick, at random, appends (with idempotency
keys, some sent twice on purpose), windows, full reads, turns (``Memory.turn`` with the offline
responder), summaries, clears, deletes, replaces and ``info`` on three append-only sessions
and three churn sessions (the only ones cleared, deleted or replaced). Every window and read is
checked as it comes back (a consistent snapshot: contiguous seqs, whole batches, a summary
that covers only existing messages); every exception is classified, and only the races listed
in ``workers.EXPECTED`` count as expected. Every other process (the odd ones) is the async
flavour (``workers_async.soak``): the same operations through ``AsyncStore`` /
``AsyncMemory``, its "threads" being coroutines on one event loop, so sync and async writers
race on the same sessions and are checked together.

At the end, with everything stopped, every session must parse cleanly
(:func:`~tests.reliability.ledger.parse_rows`: gapless seqs, whole batches, no key twice,
turns never interleaved, a replace list only at seq 1), its counters must agree with its rows,
and every append or turn acknowledged on an append-only session must be there at its seqs.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.reliability.crash import spawn
from tests.reliability.ledger import (
    APPEND_SESSIONS,
    CHURN_SESSIONS,
    parse_rows,
    read_acks,
    totals_problem,
)
from tests.reliability.targets import Target
from tests.reliability.workers import EXPECTED

import chatkeep


def run_soak(
    target: Target, *, processes: int, threads: int, seconds: float, seed: int, work: Path
) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    log = work / "soak-workers.log"
    with chatkeep.open_store(target.url):
        pass  # the schema exists before the processes race on the work
    started = time.monotonic()
    files = [work / f"soak-{n}.jsonl" for n in range(processes)]
    procs = [
        spawn(
            "soak-async" if n % 2 else "soak",
            *(target.url, str(f), str(seed * 100 + n), str(threads), str(seconds)),
            log=log,
        )
        for n, f in enumerate(files)
    ]
    problems: list[str] = []
    for proc in procs:
        try:
            code = proc.wait(timeout=seconds + 180)
        except Exception:
            proc.kill()
            raise
        if code != 0:
            problems.append(f"a soak process exited {code}: {log.read_text()[-3000:]}")
    elapsed = time.monotonic() - started
    ops: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    acked: dict[str, tuple[str, int, int]] = {}
    attempted: dict[str, str] = {}
    samples: list[str] = []
    async_ops: Counter[str] = Counter()
    finished: Counter[str] = Counter()  # processes that reported their figures, per flavour
    for f in files:
        for rec in read_acks(f):
            if rec["t"] == "done":
                ops.update(rec["ops"])
                errors.update(rec["errors"])
                samples += rec["samples"]
                finished[rec["flavour"]] += 1
                if rec["flavour"] == "async":
                    async_ops.update(rec["ops"])
            elif rec["t"] == "violation":
                problems.append(rec["what"])
            elif rec["t"] == "do" and "k" in rec:
                attempted[rec["k"]] = rec["sid"]
            elif rec["t"] == "ok" and rec["op"] != "replace" and rec["sid"] in APPEND_SESSIONS:
                acked[rec["k"]] = (rec["sid"], rec["first"], rec["last"])
    duplicated = lost = 0
    with chatkeep.open_store(target.url) as store:
        for sid in (*APPEND_SESSIONS, *CHURN_SESSIONS):
            rows = store.read(sid)
            parsed = parse_rows(sid, rows)
            problems += parsed.problems
            duplicated += parsed.duplicated
            if problem := totals_problem(store, sid, rows):
                problems.append(problem)
            problems += [
                f"{sid}: {k} was never written there"
                for k in parsed.batches
                if attempted.get(k) != sid
            ]
            if sid in APPEND_SESSIONS:
                for key, (where, first, last) in acked.items():
                    if where == sid and parsed.batches.get(key) != (first, last):
                        lost += 1
                        problems.append(
                            f"{sid}: acknowledged {key} ({first}..{last}) is "
                            f"{parsed.batches.get(key, 'missing')}"
                        )
    unexpected = {
        label: count
        for label, count in errors.items()
        if tuple(label.split(":", 1)) not in EXPECTED and label != "violation"
    }
    return {
        "backend": target.name,
        "seed": seed,
        "processes": processes,
        "threads": threads,
        "async_processes": finished["async"],  # of those that finished and reported
        "async_ops": dict(sorted(async_ops.items())),
        "async_ops_total": sum(async_ops.values()),
        "seconds": round(elapsed, 1),
        "ops": dict(sorted(ops.items())),
        "ops_total": sum(ops.values()),
        "ops_per_second": round(sum(ops.values()) / elapsed, 1),
        "errors": dict(sorted(errors.items())),
        "unexpected_errors": sum(unexpected.values()),
        "violations": errors["violation"],
        "acked_on_append_only": len(acked),
        "lost": lost,
        "duplicated": duplicated,
        "problems": problems[:20],
        "samples": samples[:5],
    }
