"""HTTP throughput and latency of ``chatkeep serve`` against a bare FastAPI endpoint.

    python -m bench.http_api            # full: about 2 minutes
    python -m bench.http_api --quick    # about 20 seconds

(Named ``http_api``, not ``http``: a ``bench/http.py`` would shadow the standard library's
``http`` package whenever ``bench/`` is on ``sys.path``.)

For 1 and 2 uvicorn workers, on loopback, a bounded asyncio load generator (httpx, a fixed
number of requests, ``CONCURRENCY`` in flight) measures:

* ``bare``: ``POST /echo`` on a FastAPI app that parses the same body and stores nothing
  (``bench/http_bare.py``) under the same uvicorn: the baseline;
* ``append``: ``POST /v1/sessions/{id}/messages`` with one ~75-token message (64 sessions,
  SQLite ``synchronous=full``: every acknowledged append is on disk);
* ``chat``: ``POST /v1/chat`` with the offline responder: lease, window, reply, atomic append
  of two messages (one session per concurrent client, so turns do not queue on one lease);
* ``chat_key``: the same turn with a fresh ``Idempotency-Key`` per request (what a retrying
  client sends): the cost of the under-lease look-up and the keyed append.

The three alternate round by round (the order flips every round), and every figure is reported
as a ratio to ``bare`` measured in the same run. The load generator runs on the same 2-CPU
machine as the servers, so absolute numbers understate a real deployment; the ratios are the
point. Results go to stdout and ``bench/results/http.{json,md}`` (``--quick``:
``quick.http.*``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
CONCURRENCY = 8


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cmd: list[str], env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=2).raise_for_status()
            return proc
        except httpx.HTTPError:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd} exited with {proc.returncode}") from None
            time.sleep(0.2)
    _stop(proc)
    raise RuntimeError(f"{cmd} did not start")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


async def _load(base: str, kind: str, n: int, seed: int) -> dict[str, Any]:
    """``n`` requests of one kind, ``CONCURRENCY`` in flight; latencies and throughput."""
    from bench.run import chat_text

    rng = random.Random(seed)
    texts = [chat_text(rng) for _ in range(64)]
    latencies: list[float] = []
    errors = 0
    counter = iter(range(n))

    async def worker(client: httpx.AsyncClient, wid: int) -> None:
        nonlocal errors
        for i in counter:
            text = texts[i % len(texts)]
            if kind == "bare":
                req = ("/echo", {"messages": [{"role": "user", "content": text}]})
            elif kind == "append":
                req = (
                    f"/v1/sessions/bench-{i % 64}/messages",
                    {"messages": [{"role": "user", "content": text}]},
                )
            else:
                req = ("/v1/chat", {"session_id": f"{kind}-{seed}-{wid}", "message": text})
            headers = {"Idempotency-Key": f"{seed}-{wid}-{i}"} if kind == "chat_key" else None
            t0 = time.perf_counter()
            r = await client.post(base + req[0], json=req[1], headers=headers)
            latencies.append(time.perf_counter() - t0)
            if r.status_code >= 300:
                errors += 1

    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client, w) for w in range(CONCURRENCY)))
        elapsed = time.perf_counter() - t0
    return {"latencies": latencies, "elapsed": elapsed, "errors": errors}


def _summary(batches: list[dict[str, Any]]) -> dict[str, float]:
    lat = sorted(x for b in batches for x in b["latencies"])
    n = len(lat)
    return {
        "n": n,
        "per_s": n / sum(b["elapsed"] for b in batches),
        "p50_ms": lat[n // 2] * 1e3,
        "p99_ms": lat[min(n - 1, int(n * 0.99))] * 1e3,
        "errors": sum(b["errors"] for b in batches),
    }


def bench_workers(tmp: Path, workers: int, total: int, rounds: int) -> dict[str, Any]:
    ck_port, bare_port = _free_port(), _free_port()
    ck = _start(
        [
            sys.executable,
            "-m",
            "chatkeep.cli",
            "serve",
            "--port",
            str(ck_port),
            "--workers",
            str(workers),
            "--store",
            f"sqlite:///{tmp}/http-{workers}.db",
        ],
        {"CHATKEEP_KEYS_FILE": str(tmp / "none.json")},
        ck_port,
    )
    bare = _start(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.http_bare:app",
            "--port",
            str(bare_port),
            "--workers",
            str(workers),
            "--log-level",
            "warning",
        ],
        {},
        bare_port,
    )
    bases = {
        "bare": f"http://127.0.0.1:{bare_port}",
        "append": f"http://127.0.0.1:{ck_port}",
        "chat": f"http://127.0.0.1:{ck_port}",
        "chat_key": f"http://127.0.0.1:{ck_port}",
    }
    batches: dict[str, list[dict[str, Any]]] = {k: [] for k in bases}
    try:
        for kind, base in bases.items():  # warm-up, not counted
            asyncio.run(_load(base, kind, 40, seed=999))
        per_round = max(1, total // rounds)
        for r in range(rounds):
            order = list(bases) if r % 2 == 0 else list(reversed(bases))
            for kind in order:
                batches[kind].append(asyncio.run(_load(bases[kind], kind, per_round, seed=r)))
    finally:
        _stop(ck)
        _stop(bare)
    out: dict[str, Any] = {"workers": workers}
    for kind, b in batches.items():
        out[kind] = _summary(b)
    for kind in ("append", "chat", "chat_key"):
        out[kind]["throughput_ratio"] = out[kind]["per_s"] / out["bare"]["per_s"]
        out[kind]["p50_ratio"] = out[kind]["p50_ms"] / out["bare"]["p50_ms"]
        out[kind]["p99_ratio"] = out[kind]["p99_ms"] / out["bare"]["p99_ms"]
    return out


def run(quick: bool) -> dict[str, Any]:
    total, rounds = (200, 2) if quick else (1500, 5)
    report: dict[str, Any] = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.http_api" + (" --quick" if quick else ""),
        "cpus": os.cpu_count(),
        "concurrency": CONCURRENCY,
        "requests_per_workload": total,
        "rows": [],
    }
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="chatkeep-http-bench-") as d:
        for workers in (1, 2):
            print(f"http, {workers} worker(s) ...", file=sys.stderr)
            report["rows"].append(bench_workers(Path(d), workers, total, rounds))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    md = render(report)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    name = "quick.http" if quick else "http"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(md + "\n")
    return report


def render(r: dict[str, Any]) -> str:
    lines = [
        f"# chatkeep serve: HTTP benchmark ({r['command']})",
        "",
        f"{r['date']}; {r['cpus']} CPUs; {r['requests_per_workload']} requests per workload "
        f"and worker count, {r['concurrency']} in flight, load generator on the same machine; "
        f"{r['seconds']} s.",
        "",
        "| workers | workload | req/s | p50 ms | p99 ms | errors | throughput vs bare | "
        "p50 vs bare | p99 vs bare |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        for kind in ("bare", "append", "chat", "chat_key"):
            s = row[kind]
            ratios = (
                "| 1.00x | 1.00x | 1.00x |"
                if kind == "bare"
                else f"| {s['throughput_ratio']:.2f}x | {s['p50_ratio']:.2f}x | "
                f"{s['p99_ratio']:.2f}x |"
            )
            lines.append(
                f"| {row['workers']} | {kind} | {s['per_s']:.0f} | {s['p50_ms']:.2f} | "
                f"{s['p99_ms']:.2f} | {s['errors']} {ratios}"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    run(parser.parse_args().quick)


if __name__ == "__main__":
    main()
