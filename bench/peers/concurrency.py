"""Concurrency: P = 1, 2, 4 processes appending to their own and to the same session.

    python -m bench.peers.concurrency            # full: P = 1, 2, 4; 1 s of appends per run
    python -m bench.peers.concurrency --quick    # P = 4 on one session; 0.3 s per run

Every contender with a durable shared store (``writers.py``) is run by P real processes (started
with ``spawn``), each appending ~75-token user messages through the contender's own API, either
each to its own session or all to one shared session, for a fixed time (or up to M messages,
whichever comes first: the fast stores need many to give a throughput above the noise). Every
message carries a unique marker (writer id + counter). The writers start together (a common
start time after all have opened their stores). A writer whose last append ends past the soft
deadline is a ``timeout``; one that does not answer by the hard deadline is killed and the run
is recorded as ``timeout`` too. Afterwards a fresh process reads
every session back and the markers are counted exactly: acknowledged appends, lost (acknowledged
but absent), duplicated (present more than once), errors by class, order violations (a writer's
messages out of its own order) and, for chatkeep, gaps in the seqs. Throughput is acknowledged
appends / wall time from the common start to the last writer's end. Contenders are interleaved:
each (P, own/same) round runs every contender, in a rotated order.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from bench.peers import rows as R
from bench.peers.procs import Failed, Timeout, Worker

TARGET = "bench.peers.concurrency"
MARKER = re.compile(r"^\[w(\d+)-(\d+)\]")

# state of a worker process between calls (one contender open at a time)
_OPEN: dict[str, Any] = {}


def pg_url() -> str:
    return (
        os.environ.get("CHATKEEP_BENCH_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    )


def redis_url() -> str:
    return os.environ.get("CHATKEEP_BENCH_REDIS_URL") or "redis://127.0.0.1:6379/0"


# ---------------------------------------------------------------- in the worker processes


def w_prepare(name: str, env: Any) -> str:
    """Create the contender's tables once (a deployed app has them) and probe its durability."""
    from bench.peers.writers import CONTENDERS, text

    c = CONTENDERS[name](env, -1)
    c.open()
    try:
        c.append("prepare", text("prepare"))
        return c.durability()
    finally:
        c.close()


def w_open(name: str, env: Any, run: int) -> None:
    from bench.peers.writers import CONTENDERS

    w_close()
    c = CONTENDERS[name](env, run)
    c.open()
    c.read("warm-up")  # first-use imports and lazy table checks, outside the timed part
    _OPEN["c"] = c


def w_close() -> None:
    c = _OPEN.pop("c", None)
    if c is not None:
        c.close()


def _error_class(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    first = re.sub(r"\[SQL:.*", "", first)
    return f"{type(exc).__name__}: {first[:90]}".rstrip(": ")


def w_go(
    start_at: float, wid: int, session: str, m: int, duration: float, soft: float
) -> dict[str, Any]:
    """From start_at on, append up to m marked messages, starting none after ``duration`` s."""
    from bench.peers.writers import text

    c = _OPEN["c"]
    while (wait := start_at - time.monotonic()) > 0:
        time.sleep(min(wait, 0.002))
    acked: list[str] = []
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    attempted = 0
    for i in range(m):
        if time.monotonic() - start_at >= duration:
            break
        attempted += 1
        marker = f"w{wid}-{i:04d}"
        t0 = time.perf_counter()
        try:
            c.append(session, text(marker))
        except Exception as exc:
            errors[_error_class(exc)] += 1
            continue
        latencies.append(time.perf_counter() - t0)
        acked.append(marker)
    end = time.monotonic()
    return {
        "acked": acked,
        "attempted": attempted,
        "latencies": latencies,
        "errors": dict(errors),
        "end": end,
        "timed_out": end - start_at > soft,
    }


def w_verify(name: str, env: Any, run: int, sessions: list[str]) -> dict[str, Any]:
    """What a fresh process reads back: per session [(content, seq)], or the read's error."""
    from bench.peers.writers import CONTENDERS

    c = CONTENDERS[name](env, run)
    out: dict[str, Any] = {}
    try:
        c.open()
        for s in sessions:
            try:
                out[s] = c.read(s)
            except Exception as exc:
                out[s] = _error_class(exc)
    finally:
        c.close()
    return out


def w_cleanup(names: list[str], env: Any) -> list[str]:
    from bench.peers.writers import CONTENDERS

    problems = []
    for n in names:
        try:
            CONTENDERS[n].cleanup(env)
        except Exception as exc:
            problems.append(f"{n}: {_error_class(exc)}")
    return problems


# ---------------------------------------------------------------- counting


def count(
    acked: dict[int, list[str] | None], read: dict[str, Any], ordered: bool
) -> dict[str, Any]:
    """Exact counts from what writers acknowledged and what a fresh process read back.

    ``acked[wid]`` is None for a writer killed at the hard deadline (its acks are unknown)."""
    present: Counter[str] = Counter()
    order_violations = seq_gaps = 0
    read_errors = {s: v for s, v in read.items() if isinstance(v, str)}
    for rows in read.values():
        if isinstance(rows, str):
            continue
        last: dict[str, int] = {}
        for content, _seq in rows:
            match = MARKER.match(content)
            if match is None:
                continue
            w, n = match.group(1), int(match.group(2))
            present[f"w{w}-{n:04d}"] += 1
            if n < last.get(w, -1):  # behind a later message of the same writer
                order_violations += 1
            last[w] = max(n, last.get(w, -1))
        if ordered:
            seqs = [seq for _c, seq in rows]
            seq_gaps += sum(1 for i, s in enumerate(seqs, 1) if s != i)
    known = {mk for marks in acked.values() if marks for mk in marks}
    unknown = {w for w, marks in acked.items() if marks is None}
    lost = sum(1 for mk in known if present[mk] == 0)
    unacked = sum(
        1 for mk in present if mk not in known and int(mk[1:].split("-")[0]) not in unknown
    )
    return {
        "acked": len(known),
        "present": sum(present.values()),
        "lost": lost,
        "duplicated": sum(n - 1 for n in present.values() if n > 1),
        "unacked_present": unacked,
        "order_violations": order_violations,
        "seq_gaps": seq_gaps if ordered else None,
        "read_errors": read_errors,
    }


# ---------------------------------------------------------------- the parent


class Pool:
    def __init__(self, n: int) -> None:
        self.workers = [Worker() for _ in range(n)]

    def replace(self, i: int) -> None:
        self.workers[i].kill()
        self.workers[i] = Worker()

    def close(self) -> None:
        for w in self.workers:
            w.close()


def one_run(
    pool: Pool,
    name: str,
    env: Any,
    run: int,
    procs: int,
    same: bool,
    m: int,
    duration: float,
    soft: float,
) -> dict[str, Any]:
    sessions = [f"run{run}-shared"] if same else [f"run{run}-w{w}" for w in range(procs)]
    workers = pool.workers[:procs]
    for w in workers:
        w.send(f"{TARGET}:w_open", name, env, run)
    opened: list[str] = []
    for i, w in enumerate(workers):  # read every answer, so no reply is left in a pipe
        try:
            w.recv(60)
        except (Timeout, Failed) as exc:
            opened.append(str(exc).splitlines()[0])
            if not w.alive():
                pool.replace(i)
    if opened:
        for i in range(procs):
            try:
                pool.workers[i].call(f"{TARGET}:w_close", timeout=30)
            except (Timeout, Failed):
                pool.replace(i)
        return {"note": f"open failed: {opened[0]}", "sessions": sessions}
    start_at = time.monotonic() + 0.2
    for wid, w in enumerate(workers):
        w.send(f"{TARGET}:w_go", start_at, wid, sessions[0 if same else wid], m, duration, soft)
    results: dict[int, dict[str, Any] | None] = {}
    failures: list[str] = []
    hard = start_at + soft + 15
    for wid in range(procs):
        try:
            results[wid] = pool.workers[wid].recv(max(0.1, hard - time.monotonic()))
        except Timeout:
            results[wid] = None
            pool.replace(wid)
        except Failed as exc:
            results[wid] = None
            failures.append(str(exc))
            pool.replace(wid)
    for wid in range(procs):
        if results[wid] is not None:
            try:
                pool.workers[wid].call(f"{TARGET}:w_close", timeout=30)
            except (Timeout, Failed):
                pool.replace(wid)
    return {"results": results, "start_at": start_at, "failures": failures, "sessions": sessions}


def to_row(
    name: str, durability: str, procs: int, same: bool, m: int, res: dict[str, Any],
    verified: dict[str, Any] | str,
) -> R.Row:  # fmt: skip
    from bench.peers.writers import CONTENDERS

    cls = CONTENDERS[name]
    row = R.Row(
        workload="concurrency", contender=name, family=cls.family, backend=cls.backend,
        durability=durability, history=0, procs=procs, same_session=same,
    )  # fmt: skip
    if "results" not in res:
        row.status, row.note = R.ERROR, res["note"]
        return row
    results = res["results"]
    acked = {w: (r["acked"] if r else None) for w, r in results.items()}
    errors: Counter[str] = Counter()
    latencies: list[float] = []
    for r in results.values():
        if r:
            errors.update(r["errors"])
            latencies += r["latencies"]
    for f in res["failures"]:
        errors[f"writer crashed: {f[:90]}"] += 1
    killed = [w for w, r in results.items() if r is None]
    soft_timeouts = [w for w, r in results.items() if r and r["timed_out"]]
    ends = [r["end"] for r in results.values() if r]
    wall = (max(ends) - res["start_at"]) if ends else None
    if isinstance(verified, str):
        row.status, row.note = R.ERROR, f"verification failed: {verified}"
        row.errors = sum(errors.values())
        row.extra = {"errors_by_class": dict(errors)}
        return row
    c = count(acked, verified, cls.ordered)
    row.errors = sum(errors.values())
    row.lost, row.duplicated = c["lost"], c["duplicated"]
    if latencies:
        t = R.timing(latencies)
        row.samples, row.median_ms, row.p95_ms = t["samples"], t["median_ms"], t["p95_ms"]
    if wall and wall > 0:
        row.throughput_ops_s = c["acked"] / wall
    notes = []
    if killed or soft_timeouts:
        row.status = R.TIMEOUT
        notes.append(
            f"{len(killed)} writer(s) killed at the hard deadline, "
            f"{len(soft_timeouts)} finished past the soft deadline"
        )
    elif res["failures"] or c["acked"] == 0:
        row.status = R.ERROR
    if c["read_errors"]:
        notes.append(f"read back failed: {next(iter(c['read_errors'].values()))}")
        row.lost = c["acked"]  # nothing acknowledged can be read back
        if row.status == R.OK:
            row.status = R.ERROR  # the store is left unreadable
    if c["lost"] or c["duplicated"]:
        notes.append(f"{c['lost']} lost, {c['duplicated']} duplicated")
    row.note = "; ".join(notes)
    row.extra = {
        "max_writes_per_writer": m,
        "attempted": sum(r["attempted"] for r in results.values() if r),
        "acked": c["acked"],
        "present": c["present"],
        "unacked_present": c["unacked_present"],
        "errors_by_class": dict(errors),
        "order_violations": c["order_violations"],
        "seq_gaps": c["seq_gaps"],
        "wall_s": wall,
        "writers_killed": len(killed),
    }
    return row


def run(
    quick: bool,
    progress: Callable[[str], None] = print,
    *,
    only: list[str] | None = None,
    procs_list: tuple[int, ...] | None = None,
    m: int | None = None,
    duration: float | None = None,
) -> list[R.Row]:
    """Rows for every contender (or ``only`` these) x P x own/same session."""
    from bench.peers.writers import CONTENDERS, Env

    procs_list = procs_list or ((4,) if quick else (1, 2, 4))
    m = m or (1000 if quick else 5000)
    duration = duration or (0.3 if quick else 1.0)
    soft = duration + (10.0 if quick else 20.0)
    modes = (True,) if quick and only is None else (False, True)  # quick: the 4-writer target
    names = only or list(CONTENDERS)
    tmp = tempfile.TemporaryDirectory(prefix="chatkeep-peers-conc-")
    env = Env(tmp=tmp.name, pg=pg_url(), redis=redis_url(), tag=f"ckpc_{uuid.uuid4().hex[:10]}")
    pool = Pool(max(procs_list))
    durability: dict[str, str] = {}
    rows: list[R.Row] = []
    try:
        progress(f"concurrency: preparing {len(names)} contenders")
        for name in names:
            try:
                durability[name] = pool.workers[0].call(
                    f"{TARGET}:w_prepare", name, env, timeout=60
                )
            except (Timeout, Failed) as exc:
                durability[name] = f"unknown ({exc})"
                if not pool.workers[0].alive():
                    pool.replace(0)
        plan: list[tuple[int, str, int, bool, dict[str, Any]]] = []
        run_no = 0
        for procs in procs_list:
            for same in modes:
                k = run_no % len(names)
                order = names[k:] + names[:k]
                progress(f"concurrency: P={procs} {'same session' if same else 'own sessions'}")
                for name in order:
                    run_no += 1
                    res = one_run(pool, name, env, run_no, procs, same, m, duration, soft)
                    plan.append((run_no, name, procs, same, res))
        pool.close()
        progress("concurrency: reading every session back from a fresh process")
        verifier = Worker()
        try:
            for run_id, name, procs, same, res in plan:
                try:
                    got: dict[str, Any] | str = verifier.call(
                        f"{TARGET}:w_verify", name, env, run_id, res["sessions"], timeout=60
                    )
                except (Timeout, Failed) as exc:
                    got = str(exc)
                    verifier.close()
                    verifier = Worker()
                rows.append(to_row(name, durability[name], procs, same, m, res, got))
        finally:
            try:
                problems = verifier.call(f"{TARGET}:w_cleanup", names, env, timeout=60)
                if problems:
                    progress(f"concurrency: cleanup problems: {problems}")
            finally:
                verifier.close()
    finally:
        pool.close()
        tmp.cleanup()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from bench.peers import venv

    venv.reexec(TARGET, sys.argv[1:])
    started = time.monotonic()
    rows = run(args.quick, progress=lambda s: print(s, file=sys.stderr, flush=True))
    path = R.save(
        "concurrency",
        rows,
        quick=args.quick,
        meta={
            "seconds": round(time.monotonic() - started, 1),
            "command": f"python -m {TARGET}" + (" --quick" if args.quick else ""),
        },
    )
    for r in rows:
        print(
            f"{r.contender:48} P={r.procs} {'same' if r.same_session else 'own ':4} {r.status:7} "
            f"ops/s={r.throughput_ops_s or 0:8.1f} err={r.errors} lost={r.lost} dup={r.duplicated}"
            f" {r.note}"
        )
    print(path)


if __name__ == "__main__":
    main()
