"""Workload ``window``: produce the 3,000-token window the LLM gets from a session holding
100 / 1,000 / 10,000 (/ 100,000) messages, the way each framework's users get it.

    python -m bench.peers.window [--quick]

A fresh memory / history / session object per request over the long-lived engine or store:
LlamaIndex ``ChatMemoryBuffer.from_defaults(token_limit=3000, chat_store=...).get()`` and
``Memory.from_defaults(token_limit=3000, ...).aget()``; LangChain ``history.messages`` +
``trim_messages(max_tokens=3000, strategy="last")``; Agents ``SQLiteSession.get_items(limit=k)``
(it has no token window: ``k`` is the number of messages chatkeep's window holds); chatkeep's
window through ``Memory`` and its adapters; raw drivers read the newest ``k`` rows by index.
Rows go to ``bench/results/peers-window.json`` (``quick-peers-window.json`` with ``--quick``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from bench.peers import venv
from bench.peers.contenders import TOKEN_LIMIT, Contender, build, history
from bench.peers.engine import (
    FULL,
    QUICK,
    Extra,
    Op,
    Progress,
    measure,
    measure_all,
    stderr_progress,
)
from bench.peers.rows import Row, save


def window_size(size: int) -> int:
    """How many messages chatkeep's 3,000-token window holds for the shared history of
    ``size`` messages (computed on ``memory://`` from the newest messages: the window only
    depends on those)."""
    import warnings

    import chatkeep

    tail = min(size, 600)
    start = size - tail
    msgs = history(tail, start=start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with chatkeep.open_store("memory://") as store:
            store.append("s", [chatkeep.Message(r, t) for r, t in msgs])
            return len(store.window("s", TOKEN_LIMIT).messages)


def make_op() -> tuple[Op, Extra]:
    """The window call, and the per-row details: how many messages it returned and how many
    chatkeep's window holds at that size."""
    k_of: dict[int, int] = {}
    got: dict[tuple[str, int], int] = {}

    def k(size: int) -> int:
        if size not in k_of:
            k_of[size] = window_size(size)
        return k_of[size]

    def op(c: Contender, sid: str, size: int) -> Callable[[], Any]:
        def call() -> None:
            got[(c.name, size)] = c.window(sid, k(size))

        return call

    def extra(c: Contender, sid: str, size: int) -> dict[str, Any]:
        return {"messages": got.get((c.name, size)), "chatkeep_window_messages": k(size)}

    return op, extra


def run(quick: bool, progress: Progress = stderr_progress) -> list[Row]:
    import tempfile
    from pathlib import Path

    op, extra = make_op()
    with tempfile.TemporaryDirectory(prefix="chatkeep-peers-window-") as d:
        contenders = build(Path(d), "window")
        return measure("window", contenders, QUICK if quick else FULL, op, progress, extra)


def run_with_append(quick: bool, progress: Progress = stderr_progress) -> dict[str, list[Row]]:
    """Both workloads over one fill per size (what ``bench.peers.run`` does: it halves the
    time spent storing histories); the window runs first at each size, on exactly ``size``
    messages, then the appends."""
    import tempfile
    from pathlib import Path

    from bench.peers import append

    wop, extra = make_op()
    ops = {"window": wop, "append": append.make_op()}
    with tempfile.TemporaryDirectory(prefix="chatkeep-peers-") as d:
        contenders = build(Path(d), "window", "append")
        budget = QUICK if quick else FULL
        return measure_all(contenders, budget, ops, progress, {"window": extra})


if __name__ == "__main__":
    venv.reexec("bench.peers.window", sys.argv[1:])
    quick = "--quick" in sys.argv[1:]
    rows = run(quick)
    print(save("window", rows, quick=quick, meta={"command": " ".join(sys.argv)}))
