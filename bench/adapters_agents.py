"""``ChatKeepSession.get_items`` against the Agents SDK's own ``SQLiteSession``, side by side.

    python -m bench.adapters_agents           # just this part (also run by python -m bench.run)
    python -m bench.adapters_agents --quick

Both on SQLite files in WAL mode on fresh temporary files: chatkeep's default store
(``synchronous=FULL``) and a file-backed ``SQLiteSession`` (the SDK leaves ``synchronous`` at
SQLite's default, FULL here; the reads measured do not depend on it). The histories are the
same items (a user question, a function call, its output, an answer, repeated). Per request a
fresh session object is made, as a web handler would: ``ChatKeepSession(sid, store=store)`` over
the app's long-lived store, and ``SQLiteSession(sid, path)`` (then closed). A long-lived
``SQLiteSession`` is reported too. Contender and baseline alternate round by round; figures are
medians, p95 and the ratio to the SDK baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

import chatkeep

SIZES = (100, 1_000, 10_000)
REPS = {100: 30, 1_000: 10, 10_000: 3}


def items_for(n: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    i = 0
    while len(out) < n:
        out += [
            {"role": "user", "content": f"What is the weather in city {i}? Please be detailed."},
            {
                "type": "function_call",
                "call_id": f"call-{i}",
                "name": "weather",
                "arguments": json.dumps({"city": f"city {i}"}),
                "id": f"fc-{i}",
                "status": "completed",
            },
            {"type": "function_call_output", "call_id": f"call-{i}", "output": f"sunny {i}"},
            {
                "id": f"msg-{i}",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": f"It is sunny in city {i}.", "annotations": []}
                ],
            },
        ]
        i += 1
    return out[:n]


def stats(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "median_ms": statistics.median(s) * 1e3,
        "p95_ms": s[min(len(s) - 1, int(len(s) * 0.95))] * 1e3,
        "n": len(s),
    }


def bench_agents(tmp: Path, quick: bool) -> list[dict[str, Any]]:
    """Rows for bench/run.py's report (one per size and read shape)."""
    from agents import SQLiteSession

    from chatkeep.adapters.openai_agents import ChatKeepSession

    loop = asyncio.new_event_loop()
    rounds = 4 if quick else 10
    rows: list[dict[str, Any]] = []
    store = chatkeep.open_store(f"sqlite:///{tmp}/agents-ck.db")
    try:
        for n in SIZES:
            print(f"agents get_items, {n:,} items ...", file=sys.stderr)
            sid = f"s{n}"
            peer_path = tmp / f"agents-sdk-{n}.db"
            items = items_for(n)
            peer_long = SQLiteSession(sid, peer_path)
            for start in range(0, n, 100):
                batch = items[start : start + 100]
                loop.run_until_complete(ChatKeepSession(sid, store=store).add_items(batch))
                loop.run_until_complete(peer_long.add_items(batch))
            # the whole history; the newest 48 (a whole number of turns: nothing to drop);
            # chatkeep's 3,000-token window vs the SDK reading the same number of items
            for mode, ck_limit, budget in (("", None, None), ("limit=48", 48, None),
                                           ("token_budget=3000", None, 3000)):  # fmt: skip

                async def ours(
                    limit: int | None = ck_limit, sid: str = sid, budget: int | None = budget
                ) -> int:
                    session = ChatKeepSession(sid, store=store, token_budget=budget)
                    return len(await session.get_items(limit))

                peer_limit = loop.run_until_complete(ours()) if budget else ck_limit

                async def theirs(
                    limit: int | None = peer_limit, sid: str = sid, path: Path = peer_path
                ) -> int:
                    peer = SQLiteSession(sid, path)
                    try:
                        return len(await peer.get_items(limit))
                    finally:
                        peer.close()

                async def theirs_long(
                    limit: int | None = peer_limit, peer: SQLiteSession = peer_long
                ) -> int:
                    return len(await peer.get_items(limit))

                expected = n if peer_limit is None else peer_limit
                for fn in (ours, theirs, theirs_long):
                    got = loop.run_until_complete(fn())
                    assert got == expected, (fn.__name__, got, expected)
                t_ours: list[float] = []
                t_theirs: list[float] = []
                t_long: list[float] = []
                k = REPS[n]
                for r in range(rounds):
                    order = [(ours, t_ours), (theirs, t_theirs), (theirs_long, t_long)]
                    for fn, out in order if r % 2 == 0 else order[::-1]:
                        out += _timed(loop, fn, k)
                a, b, c = stats(t_ours), stats(t_theirs), stats(t_long)
                rows.append(
                    {
                        "workload": f"get_items({mode}), {n:,} items stored"
                        + (f" ({peer_limit} items; SDK: limit={peer_limit})" if budget else ""),
                        "items": n,
                        "mode": mode or "all",
                        "chatkeep": a,
                        "sdk_fresh": b,
                        "sdk_long_lived": c,
                        "ratio": a["median_ms"] / b["median_ms"],
                        "ratio_long_lived": a["median_ms"] / c["median_ms"],
                    }
                )
            peer_long.close()
    finally:
        store.close()
        loop.close()
    return rows


def _timed(
    loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[int]], k: int
) -> list[float]:
    out = []
    for _ in range(k):
        t0 = time.perf_counter()
        loop.run_until_complete(fn())
        out.append(time.perf_counter() - t0)
    return out


def render_agents(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "",
        "OpenAI Agents SDK sessions, a fresh session object per request (ratio = chatkeep / "
        "SDK `SQLiteSession` on a file):",
        "",
        "| workload | ChatKeepSession median (p95) ms | SQLiteSession fresh median (p95) ms | "
        "ratio | SQLiteSession long-lived median ms | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        a, b, c = row["chatkeep"], row["sdk_fresh"], row["sdk_long_lived"]
        lines.append(
            f"| {row['workload']} | {a['median_ms']:.3f} ({a['p95_ms']:.3f}) | "
            f"{b['median_ms']:.3f} ({b['p95_ms']:.3f}) | {row['ratio']:.2f}x | "
            f"{c['median_ms']:.3f} | {row['ratio_long_lived']:.2f}x |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatkeep-bench-agents-") as d:
        rows = bench_agents(Path(d), args.quick)
    print("\n".join(render_agents(rows)))


if __name__ == "__main__":
    main()
