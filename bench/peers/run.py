"""The side-by-side benchmark against the peers: every workload, then the report.

    python -m bench.peers.run            # full: about 5 minutes here for append + window
    python -m bench.peers.run --quick    # about 75 seconds for append + window
    python -m bench.peers.run --only window --quick

Runs inside the peers' pinned environment (``bench/.peers-venv``, built on first use from
``requirements.lock``; this command re-executes itself there). Workloads: ``append`` and
``window`` (``bench.peers.append`` / ``.window``; run together they share one history per
contender and size), and ``concurrency`` and ``turn`` when those modules are present. Each
writes ``bench/results/peers-<workload>.json`` (``quick-`` prefix for ``--quick``); then
``bench.peers.report`` builds ``peers.md``, ``peers.json`` and the plots.
A progress line with the elapsed time is printed for every step.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
from importlib import metadata
from typing import Any

from bench.peers import venv

WORKLOADS = ("append", "window", "concurrency", "turn")
PACKAGES = (
    "llama-index-core",
    "llama-index-storage-chat-store-sqlite",
    "llama-index-storage-chat-store-postgres",
    "llama-index-storage-chat-store-redis",
    "langchain-core",
    "langchain-community",
    "langchain-postgres",
    "openai-agents",
    "sqlalchemy",
    "psycopg",
    "redis",
    "chatkeep",
)


def versions() -> dict[str, str]:
    import sqlite3

    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["sqlite"] = sqlite3.sqlite_version
    return out


class Clock:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        t = time.perf_counter() - self.t0
        print(f"[{int(t // 60):02d}:{t % 60:04.1f}] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="chatkeep vs the peers, side by side")
    parser.add_argument("--quick", action="store_true", help="smaller sizes and fewer calls")
    parser.add_argument("--only", action="append", choices=WORKLOADS, help="run just these")
    args = parser.parse_args()
    venv.reexec("bench.peers.run", sys.argv[1:])
    from bench.peers import report
    from bench.peers.rows import save

    clock = Clock()
    command = "python -m bench.peers.run" + (" --quick" if args.quick else "")
    command += "".join(f" --only {w}" for w in args.only or ())
    seconds: dict[str, float] = {}
    chosen = list(args.only or WORKLOADS)
    if "append" in chosen and "window" in chosen:  # one fill per size for both
        from bench.peers.window import run_with_append

        clock("window + append: starting (one history per contender and size, shared)")
        t0 = time.perf_counter()
        both = run_with_append(args.quick, progress=clock)
        seconds["window+append"] = round(time.perf_counter() - t0, 1)
        for name in ("window", "append"):
            meta = {
                "command": command,
                "versions": versions(),
                "seconds": seconds["window+append"],
                "shared_with": "window" if name == "append" else "append",
            }
            path = save(name, both[name], quick=args.quick, meta=meta)
            clock(f"{name}: {len(both[name])} rows -> {path.name}")
        chosen = [w for w in chosen if w not in ("append", "window")]
    for name in chosen:
        module_name = f"bench.peers.{name}"
        if importlib.util.find_spec(module_name) is None:
            clock(f"{name}: not in this checkout, skipped")
            continue
        module: Any = importlib.import_module(module_name)
        clock(f"{name}: starting")
        t0 = time.perf_counter()
        rows = module.run(args.quick, progress=clock)
        seconds[name] = round(time.perf_counter() - t0, 1)
        meta = {"command": command, "versions": versions(), "seconds": seconds[name]}
        path = save(name, rows, quick=args.quick, meta=meta)
        clock(f"{name}: {len(rows)} rows in {seconds[name]} s -> {path.name}")
    t0 = time.perf_counter()
    md, summary = report.build(args.quick)
    seconds["report"] = round(time.perf_counter() - t0, 1)
    stem = "quick-peers" if args.quick else "peers"
    summary["seconds"].update({"report": seconds["report"]})
    out = report.RESULTS
    (out / f"{stem}.md").write_text(md)
    (out / f"{stem}.json").write_text(report.dumps(summary))
    print(md)
    clock(f"report: {out / (stem + '.md')}; total {sum(seconds.values()):.0f} s")


if __name__ == "__main__":
    main()
