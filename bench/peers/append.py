"""Workload ``append``: store one ~75-token user message in a session that already holds
100 / 1,000 / 10,000 (/ 100,000) messages, through each contender's own API.

    python -m bench.peers.append [--quick]

Each call builds the per-request object a web handler would (a fresh history, memory or
session over the long-lived engine / pool / store) and appends one message. Rows go to
``bench/results/peers-append.json`` (``quick-peers-append.json`` with ``--quick``).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable
from typing import Any

from bench.peers import venv
from bench.peers.contenders import Contender, build
from bench.peers.engine import FULL, QUICK, Op, Progress, measure, stderr_progress
from bench.peers.rows import Row, save
from bench.run import chat_text


def make_op() -> Op:
    """One append of a ~75-token user message (the texts cycle through 512 of them)."""
    rng = random.Random(11)
    texts = [chat_text(rng) for _ in range(512)]

    def op(c: Contender, sid: str, size: int) -> Callable[[], Any]:
        it = iter(range(10**9))
        return lambda: c.append(sid, texts[next(it) % len(texts)])

    return op


def run(quick: bool, progress: Progress = stderr_progress) -> list[Row]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="chatkeep-peers-append-") as d:
        contenders = build(Path(d), "append")
        return measure("append", contenders, QUICK if quick else FULL, make_op(), progress)


if __name__ == "__main__":
    venv.reexec("bench.peers.append", sys.argv[1:])
    quick = "--quick" in sys.argv[1:]
    rows = run(quick)
    print(save("append", rows, quick=quick, meta={"command": " ".join(sys.argv)}))
