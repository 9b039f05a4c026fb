"""``Store.replace`` on SQLite against raw sqlite3 and against the clear + append it replaced.

    python -m bench.replace_bench [--quick]

Workloads: replace a session's list of N messages (N = 20 and 200, the sizes a LlamaIndex
``set_messages`` or a summary-buffer rewrite writes) with another list of N messages.

* raw: ``BEGIN IMMEDIATE; DELETE ...; INSERT ... (executemany); COMMIT`` on a plain table keyed
  by ``(session, seq)`` (what an app with no library would write; same WAL and ``synchronous``).
* clear + append: the previous adapter path (two transactions; a crash between them empties the
  session).

Every figure is a ratio to a baseline measured in the same run, contender and baseline
interleaved round by round.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import chatkeep
from bench.run import chat_text, interleave, raw_connect, stats, timed
from chatkeep import Message


def _lists(n: int, count: int, seed: int) -> list[list[Message]]:
    rng = random.Random(seed)
    return [
        [Message("user" if i % 2 == 0 else "assistant", chat_text(rng)) for i in range(n)]
        for _ in range(count)
    ]


def bench_size(tmp: Path, n: int, rounds: int, k: int) -> dict[str, Any]:
    store = chatkeep.open_store(f"sqlite:///{tmp}/replace-{n}.db")
    raw = raw_connect(tmp / f"raw-replace-{n}.db", "FULL")
    lists = _lists(n, 4, seed=n)
    it = iter(range(10**9))

    def ck() -> list[float]:
        return timed(lambda: store.replace("s", lists[next(it) % 4]), k)

    def old() -> list[float]:
        def go() -> None:
            store.clear("o")
            store.append("o", lists[next(it) % 4])

        return timed(go, k)

    def base() -> list[float]:
        def go() -> None:
            rows = [
                ("s", i + 1, m.role, json.dumps({"content": m.content}))
                for i, m in enumerate(lists[next(it) % 4])
            ]
            raw.execute("BEGIN IMMEDIATE")
            raw.execute("DELETE FROM m WHERE session = 's'")
            raw.executemany("INSERT INTO m VALUES (?, ?, ?, ?)", rows)
            raw.execute("COMMIT")

        return timed(go, k)

    t_ck, t_raw = interleave(rounds, ck, base)
    t_old, t_raw2 = interleave(rounds, old, base)
    store.close()
    raw.close()
    a, b, c = stats(t_ck), stats(t_raw + t_raw2), stats(t_old)
    return {
        "workload": f"replace {n} messages",
        "chatkeep": a,
        "raw": b,
        "clear_append": c,
        "ratio_to_raw": a["median_ms"] / b["median_ms"],
        "ratio_to_clear_append": a["median_ms"] / c["median_ms"],
    }


def run(quick: bool) -> list[dict[str, Any]]:
    rounds, k = (4, 10) if quick else (10, 30)
    with tempfile.TemporaryDirectory(prefix="chatkeep-bench-replace-") as d:
        return [bench_size(Path(d), n, rounds, k) for n in (20, 200)]


def render(rows: list[dict[str, Any]]) -> str:
    lines = [
        "",
        "Store.replace on SQLite (synchronous=FULL), ratio to raw sqlite3 "
        "DELETE + INSERT in one transaction and to the old clear + append:",
        "",
        "| workload | chatkeep median (p95) ms | raw median ms | clear+append median ms | "
        "ratio to raw | ratio to clear+append |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        a = r["chatkeep"]
        lines.append(
            f"| {r['workload']} | {a['median_ms']:.3f} ({a['p95_ms']:.3f}) | "
            f"{r['raw']['median_ms']:.3f} | {r['clear_append']['median_ms']:.3f} | "
            f"{r['ratio_to_raw']:.2f}x | {r['ratio_to_clear_append']:.2f}x |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(render(run(parser.parse_args().quick)), file=sys.stdout)
