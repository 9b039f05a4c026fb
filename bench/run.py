"""chatkeep's SQLite store against raw sqlite3, measured side by side in one run.

    python -m bench.run            # full: about 3-6 minutes
    python -m bench.run --quick    # under a minute

This machine is shared and noisy, so every figure is a ratio to a baseline measured in the same
run, with contender and baseline interleaved round by round (the order alternates) and medians
and p95 over all operations. Both sides use the same journal (WAL) and the same ``synchronous``
level, and fresh temporary files.

Baselines (what an app could do with no library at all):

* append: ``BEGIN; INSERT (session, seq, role, body); COMMIT`` into a table keyed by
  ``(session, seq)``.
* window: ``SELECT seq, role, body ... ORDER BY seq DESC LIMIT k`` plus ``json.loads`` of each
  body, with ``k`` = the number of messages chatkeep's 3,000-token window returned.
* concurrency: 4 processes, ``BEGIN IMMEDIATE; INSERT ... SELECT max(seq)+1; COMMIT`` (a gapless
  seq, as chatkeep gives), busy timeout 30 s.

Results go to stdout and to ``bench/results/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing as mp
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import chatkeep
from bench.adapters_agents import bench_agents, render_agents
from chatkeep import Message

RESULTS = Path(__file__).resolve().parent / "results"
WORDS = (
    "the a to of and in that is for it you with on as can this be are have not what how "
    "would should could model memory session user answer question request server python "
    "database window token message history reload worker process store durable context "
    "example error result value please thanks explain why when where which about into"
).split()


def chat_text(rng: random.Random, chars: int = 300) -> str:
    """About 75 tokens of chat-like English (varied, deterministic)."""
    out: list[str] = []
    size = 0
    while size < chars:
        w = rng.choice(WORDS)
        out.append(w)
        size += len(w) + 1
    return " ".join(out).capitalize() + "?"


def stats(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "median_ms": statistics.median(s) * 1e3,
        "p95_ms": s[min(len(s) - 1, int(len(s) * 0.95))] * 1e3,
        "n": len(s),
    }


def raw_connect(path: Path, sync: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync}")
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS m (session TEXT NOT NULL, seq INTEGER NOT NULL, "
        "role TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (session, seq)) WITHOUT ROWID"
    )
    return conn


def fill(store: chatkeep.Store, raw: sqlite3.Connection, sid: str, n: int, seed: int) -> None:
    rng = random.Random(seed)
    done = 0
    while done < n:
        k = min(1000, n - done)
        msgs = [
            Message("user" if (done + i) % 2 == 0 else "assistant", chat_text(rng))
            for i in range(k)
        ]
        store.append(sid, msgs)
        raw.execute("BEGIN")
        raw.executemany(
            "INSERT INTO m VALUES (?, ?, ?, ?)",
            [
                (sid, done + i + 1, m.role, json.dumps({"content": m.content}))
                for i, m in enumerate(msgs)
            ],
        )
        raw.execute("COMMIT")
        done += k


def interleave(
    rounds: int, a: Callable[[], list[float]], b: Callable[[], list[float]]
) -> tuple[list[float], list[float]]:
    ta: list[float] = []
    tb: list[float] = []
    for r in range(rounds):
        if r % 2 == 0:
            ta += a()
            tb += b()
        else:
            tb += b()
            ta += a()
    return ta, tb


def timed(fn: Callable[[], object], k: int) -> list[float]:
    out = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def bench_append(tmp: Path, sync: str, history: int, rounds: int, k: int) -> dict[str, Any]:
    url = f"sqlite:///{tmp}/append-{sync}.db?synchronous={sync}"
    store = chatkeep.open_store(url)
    raw = raw_connect(tmp / f"raw-append-{sync}.db", sync)
    fill(store, raw, "s", history, seed=1)
    rng = random.Random(2)
    texts = [chat_text(rng) for _ in range(rounds * k)]
    it_ck = iter(texts)
    it_raw = iter(texts)
    seq = [history]

    def ck() -> list[float]:
        return timed(lambda: store.append("s", Message.user(next(it_ck))), k)

    def rw() -> list[float]:
        def one() -> None:
            seq[0] += 1
            raw.execute("BEGIN")
            raw.execute(
                "INSERT INTO m VALUES (?, ?, ?, ?)",
                ("s", seq[0], "user", json.dumps({"content": next(it_raw)})),
            )
            raw.execute("COMMIT")

        return timed(one, k)

    t_ck, t_raw = interleave(rounds, ck, rw)
    store.close()
    raw.close()
    a, b = stats(t_ck), stats(t_raw)
    return {
        "workload": f"append, {history:,} stored, synchronous={sync}",
        "chatkeep": a,
        "raw": b,
        "ratio": a["median_ms"] / b["median_ms"],
        "target": 1.5,
    }


def bench_window(tmp: Path, history: int, rounds: int, k: int) -> dict[str, Any]:
    url = f"sqlite:///{tmp}/window-{history}.db"
    store = chatkeep.open_store(url)
    raw = raw_connect(tmp / f"raw-window-{history}.db", "full")
    fill(store, raw, "s", history, seed=3)
    size = len(store.window("s", 3000).messages)

    def ck() -> list[float]:
        return timed(lambda: store.window("s", 3000), k)

    def fresh() -> list[float]:
        def one() -> None:
            with chatkeep.open_store(url) as per_request:
                per_request.window("s", 3000)

        return timed(one, max(1, k // 4))

    def rw() -> list[float]:
        def one() -> None:
            rows = raw.execute(
                "SELECT seq, role, body FROM m WHERE session = ? ORDER BY seq DESC LIMIT ?",
                ("s", size),
            ).fetchall()
            [json.loads(r[2]) for r in rows]

        return timed(one, k)

    t_ck, t_raw = interleave(rounds, ck, rw)
    t_fresh, t_raw2 = interleave(max(1, rounds // 2), fresh, rw)
    store.close()
    raw.close()
    a, b, c = stats(t_ck), stats(t_raw), stats(t_fresh)
    return {
        "workload": f"3,000-token window ({size} msgs), {history:,} stored",
        "history": history,
        "chatkeep": a,
        "raw": b,
        "ratio": a["median_ms"] / b["median_ms"],
        "target": 2.0,
        "fresh_store_per_request": c,
        "fresh_ratio": c["median_ms"] / stats(t_raw2)["median_ms"],
    }


def _ck_writer(url: str, sid: str, n: int, start: Any, out: Any) -> None:
    errors = 0
    with chatkeep.open_store(url) as store:
        start.wait()
        for i in range(n):
            try:
                store.append(sid, Message.user(f"{os.getpid()}-{i}"))
            except chatkeep.ChatkeepError:
                errors += 1
    out.put(errors)


def _raw_writer(path: str, sid: str, n: int, start: Any, out: Any) -> None:
    errors = 0
    conn = raw_connect(Path(path), "full")
    start.wait()
    for i in range(n):
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "INSERT INTO m SELECT ?, COALESCE(MAX(seq), 0) + 1, 'user', ? FROM m "
                "WHERE session = ?",
                (sid, json.dumps({"content": f"{os.getpid()}-{i}"}), sid),
            )
            conn.execute("COMMIT")
        except sqlite3.Error:
            errors += 1
            if conn.in_transaction:
                conn.execute("ROLLBACK")
    conn.close()
    out.put(errors)


def _race(target: Callable[..., None], where: str, n: int, shared: bool) -> tuple[float, int]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=target, args=(where, "shared" if shared else f"own-{p}", n, start, out))
        for p in range(4)
    ]
    for p in procs:
        p.start()
    time.sleep(1.5)  # let every process open its store
    t0 = time.perf_counter()
    start.set()
    errors = sum(out.get(timeout=600) for _ in procs)
    wall = time.perf_counter() - t0
    for p in procs:
        p.join(timeout=60)
    return 4 * n / wall, errors


def bench_processes(tmp: Path, n: int, shared: bool) -> dict[str, Any]:
    name = "shared" if shared else "own"
    url = f"sqlite:///{tmp}/proc-{name}.db"
    chatkeep.open_store(url).close()
    raw_path = tmp / f"raw-proc-{name}.db"
    raw_connect(raw_path, "full").close()
    ck_rate, ck_err = _race(_ck_writer, url, n, shared)
    raw_rate, raw_err = _race(_raw_writer, str(raw_path), n, shared)
    with chatkeep.open_store(url) as store:
        sids = ["shared"] if shared else [f"own-{p}" for p in range(4)]
        seqs = [[m.seq for m in store.read(s)] for s in sids]
    per = 4 * n // len(sids)
    gapless = all(s == list(range(1, per + 1)) for s in seqs)
    texts = [m.text for s in sids for m in chatkeep.open_store(url).read(s)]
    return {
        "workload": f"4 processes x {n} appends, {'one session' if shared else 'own sessions'}",
        "chatkeep_per_s": ck_rate,
        "raw_per_s": raw_rate,
        "ratio": ck_rate / raw_rate,
        "target": 0.5 if shared else None,
        "errors": ck_err,
        "raw_errors": raw_err,
        "gapless": gapless,
        "duplicates": len(texts) - len(set(texts)),
        "lost": 4 * n - len(set(texts)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (under a minute)")
    args = parser.parse_args()
    quick = args.quick
    t_start = time.perf_counter()
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.run" + (" --quick" if quick else ""),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform(),
            "chatkeep": chatkeep.__version__,
        },
        "append": [],
        "window": [],
        "processes": [],
    }
    rounds, k = (60, 4) if quick else (250, 4)  # fine-grained ABBA: load bursts hit both sides
    with tempfile.TemporaryDirectory(prefix="chatkeep-bench-") as d:
        tmp = Path(d)
        for sync in ("full", "normal"):
            print(f"append, synchronous={sync} ...", file=sys.stderr)
            report["append"].append(bench_append(tmp, sync, 10_000, rounds, k))
        for n in (100, 1_000, 10_000) if quick else (100, 1_000, 10_000, 100_000):
            print(f"window, {n:,} stored ...", file=sys.stderr)
            report["window"].append(bench_window(tmp, n, rounds, k))
        for shared in (True, False):
            print(
                f"4 processes, {'one session' if shared else 'own sessions'} ...", file=sys.stderr
            )
            report["processes"].append(bench_processes(tmp, 100 if quick else 300, shared))
        report["agents"] = bench_agents(tmp, quick)  # bench/adapters_agents.py
    from bench import redis_bench  # redis:// vs raw redis-py (skipped without a server)

    report["redis"] = redis_bench.run(quick)

    from bench import pg as pg_bench  # PostgreSQL vs raw psycopg (skipped if no server)

    print("postgresql ...", file=sys.stderr)
    report["postgres"] = pg_bench.run(quick)
    w = report["window"]
    report["window_flatness"] = w[-1]["chatkeep"]["median_ms"] / w[0]["chatkeep"]["median_ms"]
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    md = render(report) + redis_bench.render(report["redis"])
    from bench import replace_bench  # Store.replace vs raw sqlite3 and clear + append

    report["replace"] = replace_bench.run(quick)
    md += "\n" + replace_bench.render(report["replace"])
    if quick:  # the peers' quick run (make bench-quick) measures ChatMemoryBuffer too
        print(
            "llamaindex memories: skipped with --quick (python -m bench.adapters_llamaindex "
            "--quick runs it alone)",
            file=sys.stderr,
        )
    elif importlib.util.find_spec("llama_index") is not None:  # LlamaIndex memories
        from bench import adapters_llamaindex

        report["llamaindex"] = adapters_llamaindex.run(quick)
        md += "\n\n" + adapters_llamaindex.render(report["llamaindex"])
    print(md)
    RESULTS.mkdir(exist_ok=True)
    name = "quick" if quick else "latest"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(md + "\n")
    from bench.http_api import run as run_http  # chatkeep serve vs a bare FastAPI endpoint

    run_http(quick)


def verdict(ratio: float, target: float | None, higher_is_better: bool = False) -> str:
    if target is None:
        return ""
    ok = ratio >= target if higher_is_better else ratio <= target
    return (
        "PASS" if ok else "MISS"
    ) + f" (target {'>=' if higher_is_better else '<='} {target:g}x)"


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    lines = [
        f"# chatkeep benchmark ({r['command']})",
        "",
        f"{r['date']}; {m['cpus']} CPUs; Python {m['python']}; SQLite {m['sqlite']}; "
        f"chatkeep {m['chatkeep']}; {r['seconds']} s. Medians and p95 of every operation, "
        "contender and baseline interleaved in one run; ratio = chatkeep / raw sqlite3.",
        "",
        "| workload | chatkeep median (p95) ms | raw median (p95) ms | ratio | verdict |",
        "|---|---|---|---|---|",
    ]
    for row in r["append"] + r["window"]:
        a, b = row["chatkeep"], row["raw"]
        lines.append(
            f"| {row['workload']} | {a['median_ms']:.3f} ({a['p95_ms']:.3f}) | "
            f"{b['median_ms']:.3f} ({b['p95_ms']:.3f}) | {row['ratio']:.2f}x | "
            f"{verdict(row['ratio'], row['target'])} |"
        )
    lines += [
        "",
        "Window with a store opened per request (open + window + close):",
        "",
        "| stored | median (p95) ms | ratio to raw read |",
        "|---|---|---|",
    ]
    for row in r["window"]:
        c = row["fresh_store_per_request"]
        lines.append(
            f"| {row['history']:,} | {c['median_ms']:.3f} ({c['p95_ms']:.3f}) | "
            f"{row['fresh_ratio']:.2f}x |"
        )
    lines += [
        "",
        f"Window flatness: median at {r['window'][-1]['history']:,} stored / at "
        f"{r['window'][0]['history']:,} = {r['window_flatness']:.2f}x",
        "",
        "| processes | chatkeep appends/s | raw appends/s | ratio | errors | lost | "
        "duplicated | gapless | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["processes"]:
        lines.append(
            f"| {row['workload']} | {row['chatkeep_per_s']:.0f} | {row['raw_per_s']:.0f} | "
            f"{row['ratio']:.2f}x | {row['errors']} (raw {row['raw_errors']}) | {row['lost']} | "
            f"{row['duplicates']} | {row['gapless']} | "
            f"{verdict(row['ratio'], row['target'], higher_is_better=True)} |"
        )
    lines += render_agents(r.get("agents", []))
    from bench import pg as pg_bench

    lines += pg_bench.render(r.get("postgres"))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
