"""``make soak``: the long reliability run, bounded and self-stopping.

    python -m tests.reliability.soak [--kills 216] [--minutes 15] [--soak-seconds 40]

1. Crash: ``--kills`` SIGKILLs spread over every backend and durability setting
   (``targets.KILL_TARGETS``), each checked as ``crash.py`` describes; half the killed
   writers are the async flavour (``AsyncStore`` / ``AsyncMemory``).
2. Concurrency: 8 processes x ``--threads`` on every backend (``targets.SOAK_TARGETS``) for
   ``--soak-seconds`` each, checked as ``concurrency.py`` describes; half the processes are
   the async flavour (``--threads`` coroutines on one event loop each).
3. Faults: every hook in :data:`FAULTS` (database restarts from ``faults_lib``, when present),
   ``--fault-cycles`` each, half of them with writers on the sync API, half on the async one.
4. Fuzzing: ``test_fuzz.py`` (Hypothesis) and ``test_fuzz_api.py`` (schemathesis) with fresh
   random cases, ``--fuzz-examples`` Hypothesis examples per backend (schemathesis a tenth of
   that per operation), in a pytest child process; the counts of cases run are reported.

It needs the PostgreSQL and Redis servers (``$CHATKEEP_TEST_POSTGRES_URL`` /
``$CHATKEEP_TEST_REDIS_URL``, default the local ones) plus ``redis-server`` and ``redis-cli``
for the private servers and the cluster it starts. It stops by itself when the work is done or
``--minutes`` have passed, prints progress as it goes, writes ``soak-latest.json`` and
``soak-latest.md`` to ``--out`` and exits 1 if anything was lost, duplicated, torn or
unexpected.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest  # pg_support/redis_support report a missing server through it
from tests.reliability.concurrency import run_soak
from tests.reliability.crash import run_crash
from tests.reliability.targets import KILL_TARGETS, SOAK_TARGETS, open_target

import chatkeep

#: fault cycles to run after the crash and concurrency parts: (name, run(cycles, api) ->
#: figures), ``api`` "sync" or "async". The figures should include ``lost`` and ``duplicated``
#: (counted into the verdict).
FAULTS: list[tuple[str, Callable[[int, str], dict[str, Any]]]] = []
try:
    from tests.reliability.faults_lib import run_fault_cycles  # the faults part of the suite

    for _kind in ("postgres", "redis"):
        FAULTS.append(
            (_kind, lambda cycles, api, kind=_kind: run_fault_cycles(kind, cycles, api=api))
        )
except ModuleNotFoundError as exc:  # not in this checkout
    if exc.name != "tests.reliability.faults_lib":
        raise

_SERVER_GONE = (pytest.fail.Exception, pytest.skip.Exception)


class Progress:
    """One status line, rewritten in place on a terminal, one line per update elsewhere."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.tty = sys.stdout.isatty()

    def __call__(self, text: str, *, done: bool = False) -> None:
        stamp = f"[{time.monotonic() - self.started:6.0f}s] {text}"
        if self.tty:
            print(f"\r\033[K{stamp}", end="\n" if done else "", flush=True)
        else:
            print(stamp, flush=True)


def crash_part(args: argparse.Namespace, work: Path, say: Progress, until: float) -> list[Any]:
    targets = [t for t in KILL_TARGETS if t in args.backends]
    share, extra = divmod(args.kills, len(targets))
    out: list[Any] = []
    for i, name in enumerate(targets):
        kills = share + (1 if i < extra else 0)

        def show(f: dict[str, Any], name: str = name, kills: int = kills) -> None:
            say(
                f"crash {name}: {f['kills']}/{kills} kills ({f['async_kills']} async), "
                f"{f['acked']} acked, "
                f"lost {f['lost']}, duplicated {f['duplicated']}"
            )

        try:
            with open_target(name, work / name) as target:
                seed = args.seed + i
                figures = run_crash(
                    target, kills, seed, work / name / "w", deadline=until, progress=show
                )
        except (Exception, *_SERVER_GONE) as exc:
            figures = {"backend": name, "kills": 0, "problems": [f"{type(exc).__name__}: {exc}"]}
        say(f"crash {name}: done, {len(figures['problems'])} problems", done=True)
        out.append(figures)
    return out


def soak_part(args: argparse.Namespace, work: Path, say: Progress, until: float) -> list[Any]:
    out: list[Any] = []
    targets = [t for t in SOAK_TARGETS if t in args.backends]
    for i, name in enumerate(targets):
        left = until - time.monotonic()
        seconds = min(args.soak_seconds, left / (len(targets) - i) - 30)
        if seconds < 5:
            out.append({"backend": name, "skipped": "the --minutes budget ran out"})
            continue
        say(f"soak {name}: {args.processes} processes x {args.threads} threads, {seconds:.0f}s")
        try:
            with open_target(name, work / f"soak-{name}") as target:
                figures = run_soak(
                    target,
                    processes=args.processes,
                    threads=args.threads,
                    seconds=seconds,
                    seed=args.seed + 100 + i,
                    work=work / f"soak-{name}" / "w",
                )
        except (Exception, *_SERVER_GONE) as exc:
            figures = {"backend": name, "problems": [f"{type(exc).__name__}: {exc}"]}
        say(
            f"soak {name}: {figures.get('ops_total', 0)} ops "
            f"({figures.get('async_ops_total', 0)} async), "
            f"{figures.get('unexpected_errors', '?')} unexpected errors, "
            f"{len(figures['problems'])} problems",
            done=True,
        )
        out.append(figures)
    return out


def fault_part(args: argparse.Namespace, say: Progress) -> list[Any]:
    out: list[Any] = []
    shares = (("sync", (args.fault_cycles + 1) // 2), ("async", args.fault_cycles // 2))
    for name, run in FAULTS:
        for api, cycles in shares:
            if not cycles:
                continue
            say(f"faults {name} ({api} API): {cycles} cycles")
            try:
                figures = {**run(cycles, api), "kind": f"{name}-{api}"}
            except (Exception, *_SERVER_GONE) as exc:
                figures = {"kind": f"{name}-{api}", "problems": [f"{type(exc).__name__}: {exc}"]}
            say(f"faults {name} ({api} API): {figures}", done=True)
            out.append(figures)
    return out


def fuzz_part(args: argparse.Namespace, work: Path, say: Progress) -> dict[str, Any]:
    """The fuzzers with fresh random cases in a pytest child; the counts of what they ran."""
    if args.fuzz_examples <= 0:
        return {"skipped": "--fuzz-examples 0"}
    counts = work / "fuzz.json"
    here = Path(__file__).resolve().parent
    env = dict(
        os.environ,
        CI="true",
        CHATKEEP_FUZZ_EXAMPLES=str(args.fuzz_examples),
        CHATKEEP_FUZZ_RANDOM="1",
        CHATKEEP_FUZZ_REPORT=str(counts),
    )
    say(f"fuzz: {args.fuzz_examples} Hypothesis examples per backend, schemathesis with keys")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--timeout", "1800"]
    cmd += [str(here / "test_fuzz.py"), str(here / "test_fuzz_api.py")]
    done = subprocess.run(cmd, env=env, cwd=here.parents[1], capture_output=True, text=True)
    figures: dict[str, Any] = {"cases": json.loads(counts.read_text()) if counts.exists() else {}}
    figures["problems"] = (
        [] if done.returncode == 0 else [f"pytest exit {done.returncode}: {done.stdout[-2000:]}"]
    )
    say(f"fuzz: {figures['cases']}, exit {done.returncode}", done=True)
    return figures


def verdict(report: dict[str, Any]) -> list[str]:
    """Everything that makes the run a failure."""
    bad = []
    for part in ("crash", "soak", "faults"):
        for f in report[part]:
            name = f.get("backend") or f.get("kind")
            bad += [f"{part} {name}: {p}" for p in f.get("problems", [])]
            for key in ("lost", "duplicated", "unexpected_errors", "violations"):
                if f.get(key):
                    bad.append(f"{part} {name}: {key} = {f[key]}")
    bad += [f"fuzz: {p}" for p in report.get("fuzz", {}).get("problems", [])]
    return bad


def markdown(report: dict[str, Any]) -> str:
    t = report["totals"]
    lines = [
        "# chatkeep soak run",
        "",
        f"{report['finished_at']}, {report['minutes']} minutes, seed {report['seed']}, "
        f"chatkeep {report['chatkeep']}, Python {report['python']}, {report['cpus']} CPUs. "
        f"Verdict: **{'pass' if not report['failures'] else 'FAIL'}**.",
        "",
        f"**{t['kills']} SIGKILLs** ({t['async_kills']} of them of async writers, "
        f"{t['server_kills']} also of the Redis server), "
        f"{t['acked']} acknowledged writes, **{t['lost']} lost, {t['duplicated']} duplicated**, "
        f"{t['integrity_checks']} SQLite integrity checks "
        f"({'all ok' if t['integrity_ok'] else 'NOT ALL OK'}), "
        f"{t['torn_tails']} torn file tails found (each ignored by readers). "
        f"Soak: {t['ops_total']} operations, {t['async_ops_total']} of them by async workers.",
        "",
        "## Crash (SIGKILL)",
        "",
        "| backend | kills (early / aimed) | async kills (acked) "
        "| acked (appends / turns / replaces) "
        "| retried (replayed) | lost | duplicated | integrity checks | torn tails | problems |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["crash"]:
        lines.append(
            f"| {f['backend']} | {f['kills']} ({f.get('early_kills', 0)} / "
            f"{f.get('aimed_kills', 0)}) | {f.get('async_kills', 0)} ({f.get('async_acked', 0)}) "
            f"| {f.get('acked', 0)} ({f.get('acked_appends', 0)}"
            f" / {f.get('acked_turns', 0)} / {f.get('acked_replaces', 0)}) | "
            f"{f.get('retried', 0)} ({f.get('retries_replayed', 0)}) | {f.get('lost', '-')} | "
            f"{f.get('duplicated', '-')} | {f.get('integrity_checks', 0)} | "
            f"{f.get('torn_tails', 0)} | {len(f['problems'])} |"
        )
    lines += [
        "",
        "## Concurrency soak",
        "",
        "| backend | processes x threads | async processes | seconds | ops (async) | ops/s "
        "| expected errors | unexpected | violations | lost | duplicated |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for f in report["soak"]:
        if "ops" not in f:
            lines.append(f"| {f['backend']} | {f.get('skipped') or f.get('problems')} |")
            continue
        expected = sum(f["errors"].values()) - f["unexpected_errors"] - f["violations"]
        lines.append(
            f"| {f['backend']} | {f['processes']} x {f['threads']} | "
            f"{f.get('async_processes', 0)} | {f['seconds']} | "
            f"{f['ops_total']} ({f.get('async_ops_total', 0)}) | {f['ops_per_second']} | "
            f"{expected} | {f['unexpected_errors']} "
            f"| {f['violations']} | {f['lost']} | {f['duplicated']} |"
        )
    lines += ["", "Operations per kind (of them by async workers), summed over the backends:", ""]
    lines += [f"- {k}: {v} ({t['async_ops'].get(k, 0)})" for k, v in t["ops"].items()]
    lines += ["", "Errors by class (operation:exception), summed over the backends:", ""]
    lines += [f"- {k}: {v}" for k, v in t["errors"].items()] or ["- none"]
    lines += ["", "## Faults", ""]
    lines += [f"- {json.dumps(f)}" for f in report["faults"]] or ["- no fault hooks ran"]
    lines += ["", "## Fuzzing (fresh random cases)", ""]
    fuzz = report.get("fuzz", {})
    lines += [f"- {k}: {v}" for k, v in fuzz.get("cases", {}).items()] or [
        f"- {fuzz.get('skipped', 'no cases ran')}"
    ]
    if report["failures"]:
        lines += ["", "## Failures", ""] + [f"- {x}" for x in report["failures"]]
    return "\n".join(lines) + "\n"


def totals(report: dict[str, Any]) -> dict[str, Any]:
    crash, soak = report["crash"], report["soak"]
    ops: dict[str, int] = {}
    async_ops: dict[str, int] = {}
    errors: dict[str, int] = {}
    for f in soak:
        for k, v in f.get("ops", {}).items():
            ops[k] = ops.get(k, 0) + v
        for k, v in f.get("async_ops", {}).items():
            async_ops[k] = async_ops.get(k, 0) + v
        for k, v in f.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
    checks = sum(f.get("integrity_checks", 0) for f in crash)
    return {
        **{
            k: sum(f.get(k, 0) for f in crash)
            for k in (
                "kills",
                "async_kills",
                "server_kills",
                "acked",
                "async_acked",
                "torn_tails",
                "integrity_checks",
            )
        },
        "ops_total": sum(ops.values()),
        "async_ops_total": sum(async_ops.values()),
        "lost": sum(f.get("lost", 0) for f in crash + soak),
        "duplicated": sum(f.get("duplicated", 0) for f in crash + soak),
        "integrity_ok": checks > 0
        and not any("integrity" in p for f in crash for p in f["problems"]),
        "ops": dict(sorted(ops.items())),
        "async_ops": dict(sorted(async_ops.items())),
        "errors": dict(sorted(errors.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.reliability.soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--kills", type=int, default=216, help="SIGKILLs over all backends")
    parser.add_argument("--minutes", type=float, default=15, help="stop after this long")
    parser.add_argument("--soak-seconds", type=float, default=40, help="per backend")
    parser.add_argument("--processes", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4, help="per process")
    parser.add_argument(
        "--fault-cycles", type=int, default=10, help="per fault hook, half of them async"
    )
    parser.add_argument(
        "--fuzz-examples", type=int, default=2000, help="Hypothesis examples per backend (0: none)"
    )
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 30))
    parser.add_argument("--backends", nargs="+", default=sorted({*KILL_TARGETS, *SOAK_TARGETS}))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # as pytest's rootdir import
    os.environ.setdefault("CHATKEEP_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
    os.environ.setdefault("CHATKEEP_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    started = time.monotonic()
    say = Progress(started)
    budget = args.minutes * 60
    say(
        f"soak: seed {args.seed} (replay with --seed {args.seed}), budget {args.minutes:g} min",
        done=True,
    )
    with tempfile.TemporaryDirectory(prefix="chatkeep-soak-") as tmp:
        work = Path(tmp)
        report: dict[str, Any] = {"seed": args.seed}
        report["crash"] = crash_part(args, work, say, started + 0.45 * budget)
        report["soak"] = soak_part(args, work, say, started + 0.85 * budget)
        report["faults"] = fault_part(args, say)
        report["fuzz"] = fuzz_part(args, work, say)
    report |= {
        "finished_at": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "minutes": round((time.monotonic() - started) / 60, 1),
        "chatkeep": chatkeep.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "totals": totals(report),
        "failures": verdict(report),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak-latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "soak-latest.md").write_text(markdown(report))
    t = report["totals"]
    say(
        f"done: {t['kills']} kills ({t['async_kills']} async), {t['acked']} acked, "
        f"{t['async_ops_total']}/{t['ops_total']} soak ops async, {t['lost']} lost, "
        f"{t['duplicated']} duplicated; {len(report['failures'])} failures; "
        f"results in {args.out}/soak-latest.md",
        done=True,
    )
    for failure in report["failures"]:
        print(f"FAIL {failure}")
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
