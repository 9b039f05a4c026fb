"""The measuring loop the append and window workloads share.

For each history size, every live contender's session is topped up to that size (untimed,
under a deadline), then the contenders take turns round by round (the order rotates each
round), each doing a small batch of timed operations (one, in the full and quick runs). Every
operation runs under a deadline: a contender that runs past it gets a ``timeout`` row and sits
out the larger sizes (a ``skipped`` row says so); an exception gives an ``error`` row. Nothing
is dropped.
"""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench.peers.contenders import Contender, Deadline, deadline, history
from bench.peers.rows import ERROR, OK, TIMEOUT, Row, timing

SKIPPED = "skipped"
Progress = Callable[[str], None]


def stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Budget:
    sizes: tuple[int, ...]
    rounds: int  # interleaving rounds per size
    batch: int  # timed operations per contender per round
    op_timeout: float  # seconds one operation may take
    fill_timeout: float  # seconds topping a session up to the next size may take
    size_budget: float  # seconds of timed work per contender per size (then it stops early)


# One call per contender per round, many rounds: a burst of load on this shared machine lands on
# every contender alike instead of on one contender's batch.
FULL = Budget((100, 1_000, 10_000, 100_000), 30, 1, 5.0, 90.0, 8.0)
QUICK = Budget((100, 10_000), 9, 1, 2.0, 20.0, 1.5)  # make bench-quick: < 3 min in all


class Texts:
    """The shared history (same messages for everyone), generated once and extended lazily."""

    def __init__(self) -> None:
        self.msgs: list[tuple[str, str]] = []

    def upto(self, n: int) -> list[tuple[str, str]]:
        if len(self.msgs) < n:
            self.msgs += history(n - len(self.msgs), start=len(self.msgs))
        return self.msgs[:n]


def _short(exc: BaseException) -> str:
    line = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {line}"


Op = Callable[[Contender, str, int], Callable[[], Any]]
Extra = Callable[[Contender, str, int], dict[str, Any]]


def measure(
    workload: str,
    contenders: list[Contender],
    budget: Budget,
    op: Op,
    progress: Progress = stderr_progress,
    extra: Extra | None = None,
) -> list[Row]:
    """Run ``op(contender, sid, size)()`` interleaved at every size; one row per
    (contender, size). ``extra`` adds per-row details (e.g. how many messages a window had)."""
    extras = {workload: extra} if extra is not None else {}
    return measure_all(contenders, budget, {workload: op}, progress, extras)[workload]


def measure_all(
    contenders: list[Contender],
    budget: Budget,
    ops: dict[str, Op],
    progress: Progress = stderr_progress,
    extras: dict[str, Extra] | None = None,
) -> dict[str, list[Row]]:
    """Several workloads over one fill per size: each contender is opened once and its session
    topped up once per size, then each workload in ``ops`` (in order; reads before appends, so
    a window sees exactly ``size`` messages) runs its rounds with the contenders that do it."""
    rows: dict[str, list[Row]] = {w: [] for w in ops}
    texts = Texts()
    dead: dict[tuple[str, str], str] = {}  # (workload, contender) -> why it sits out
    stored: dict[str, int] = {}  # messages in the contender's session so far
    sid = "bench-session"

    def mine(c: Contender) -> list[str]:
        return [w for w in ops if w in c.does]

    def row(c: Contender, size: int, status: str, note: str) -> None:
        for w in mine(c):
            r = Row(w, c.name, c.family, c.backend, c.durability, size, status, note=note)
            rows[w].append(r)
            dead.setdefault((w, c.name), note)

    opened: list[Contender] = []
    try:
        for c in contenders:
            try:
                with deadline(budget.fill_timeout):
                    c.open()
                opened.append(c)
            except Exception as exc:  # a failing contender is a result
                row(c, budget.sizes[0], ERROR, f"open failed: {_short(exc)}")
        for size in budget.sizes:
            live = []
            for c in opened:
                if size > c.max_history:
                    continue
                gone = [w for w in mine(c) if (w, c.name) in dead]
                for w in gone:
                    rows[w].append(
                        Row(
                            w,
                            c.name,
                            c.family,
                            c.backend,
                            c.durability,
                            size,
                            SKIPPED,
                            note=f"not run: {dead[(w, c.name)]}",
                        )
                    )
                if len(gone) == len(mine(c)):
                    continue
                have = stored.get(c.name, 0)
                progress(f"  {c.name}: storing {max(0, size - have):,} messages")
                t0 = time.perf_counter()
                try:
                    with deadline(budget.fill_timeout):
                        if size > have:
                            c.fill(sid, texts.upto(size)[have:])
                    stored[c.name] = max(size, have)
                    live.append(c)
                except Deadline:
                    row(c, size, TIMEOUT, f"filling {size:,} took > {budget.fill_timeout:g} s")
                except Exception as exc:
                    row(c, size, ERROR, f"filling {size:,}: {_short(exc)}")
                    traceback.print_exc()
                else:
                    progress(f"    stored in {time.perf_counter() - t0:.1f} s")
            for w, op in ops.items():
                these = [c for c in live if w in c.does and (w, c.name) not in dead]
                extra = (extras or {}).get(w)
                rows[w] += _rounds(w, these, size, sid, budget, op, progress, dead, stored, extra)
    finally:
        for c in opened:
            try:
                c.close()
            except Exception as exc:  # cleanup must go on for the others
                progress(f"  close {c.name}: {_short(exc)}")
    return rows


def _rounds(
    workload: str,
    live: list[Contender],
    size: int,
    sid: str,
    budget: Budget,
    op: Op,
    progress: Progress,
    dead: dict[tuple[str, str], str],
    stored: dict[str, int],
    extra: Extra | None,
) -> list[Row]:
    samples: dict[str, list[float]] = {c.name: [] for c in live}
    spent: dict[str, float] = {c.name: 0.0 for c in live}
    failed: dict[str, tuple[str, str]] = {}
    calls = {c.name: op(c, sid, size) for c in live}
    progress(f"  {workload} at {size:,} stored: {len(live)} contenders x {budget.rounds} rounds")
    for r in range(budget.rounds):
        order = live[r % len(live) :] + live[: r % len(live)] if live else []
        if r % 2:
            order.reverse()
        for c in order:
            if c.name in failed or spent[c.name] > budget.size_budget:
                continue
            fn = calls[c.name]
            for _ in range(budget.batch):
                t0 = time.perf_counter()
                try:
                    with deadline(budget.op_timeout):
                        fn()
                except Deadline:
                    failed[c.name] = (TIMEOUT, f"one call took > {budget.op_timeout:g} s")
                    dead[(workload, c.name)] = f"timed out at {size:,}"
                    break
                except Exception as exc:
                    failed[c.name] = (ERROR, _short(exc))
                    dead[(workload, c.name)] = f"failed at {size:,}"
                    traceback.print_exc()
                    break
                dt = time.perf_counter() - t0
                samples[c.name].append(dt)
                spent[c.name] += dt
                if workload == "append":
                    stored[c.name] += 1
    out = []
    for c in live:
        s = samples[c.name]
        status, note = failed.get(c.name, (OK, ""))
        if status == OK and spent[c.name] > budget.size_budget:
            note = f"stopped early: time budget {budget.size_budget:g} s per size"
        r = Row(workload, c.name, c.family, c.backend, c.durability, size, status, note=note)
        if s:
            t = timing(s)
            r.samples, r.median_ms, r.p95_ms = t["samples"], t["median_ms"], t["p95_ms"]
        if extra is not None and status == OK:
            try:
                r.extra = extra(c, sid, size)
            except Exception as exc:
                r.extra = {"extra_error": _short(exc)}
        if status == TIMEOUT:
            r.extra["deadline_s"] = budget.op_timeout
        r.extra["how"] = c.note
        out.append(r)
        shown = f"{r.median_ms:.3f} ms" if r.median_ms is not None else "-"
        progress(f"    {c.name:<45} {status:<8} median {shown} ({len(s)} samples) {note}")
    return out
