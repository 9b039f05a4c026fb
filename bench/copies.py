"""What copying returned objects costs the in-process stores (memory://, file://'s cache).

    python -m bench.copies

The machine is shared and noisy, so each figure is a ratio to a baseline measured in the same
run, interleaved round by round: the same ``window()`` calls with the copying switched off,
which is what these stores did before they copied. Two sessions of 400
messages: plain text (the hot path, nothing to copy) and messages that each carry metadata
and a tool call (everything copied).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import chatkeep
from chatkeep import Message
from chatkeep.stores import file as file_mod
from chatkeep.stores import memory as memory_mod

BUDGET, ROUNDS, CALLS = 3000, 15, 40


def _fill(store: chatkeep.Store) -> None:
    for i in range(200):
        store.append("plain", [Message.user(f"question {i} " * 8), Message.assistant("ok " * 8)])
        call = {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        store.append(
            "rich",
            [
                Message.user("q", metadata={"i": i, "tags": ["a"]}),
                Message.assistant(None, tool_calls=[call]),  # type: ignore[arg-type]
            ],
        )


@contextmanager
def _uncopied() -> Iterator[None]:
    """The baseline: the same stores with the copying switched off (what they did before)."""
    saved = memory_mod.detach_window, file_mod.detach_window
    memory_mod.detach_window = file_mod.detach_window = lambda w: w
    try:
        yield
    finally:
        memory_mod.detach_window, file_mod.detach_window = saved


def _ms(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    for _ in range(CALLS):
        fn()
    return (time.perf_counter() - t) / CALLS * 1e3


def run() -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for url in ("memory://", f"file://{tmp}/files"):
            with chatkeep.open_store(url) as store:
                _fill(store)
                for sid in ("plain", "rich"):
                    a: list[float] = []
                    b: list[float] = []
                    for r in range(ROUNDS):
                        for copied in (r % 2 == 0, r % 2 == 1):  # alternate which goes first
                            if copied:
                                a.append(_ms(lambda s=store, i=sid: s.window(i, BUDGET)))
                            else:
                                with _uncopied():
                                    b.append(_ms(lambda s=store, i=sid: s.window(i, BUDGET)))
                    ma, mb = statistics.median(a), statistics.median(b)
                    rows.append(
                        {
                            "store": url.split(":")[0],
                            "session": sid,
                            "window_ms": ma,
                            "uncopied_ms": mb,
                            "ratio": ma / mb,
                        }
                    )
    return rows


def main() -> None:
    print("| store | messages | window() median ms | uncopied baseline ms | ratio |")
    print("|---|---|---|---|---|")
    for r in run():
        print(
            f"| {r['store']}:// | {r['session']} | {r['window_ms']:.3f} | "
            f"{r['uncopied_ms']:.3f} | {r['ratio']:.2f}x |"
        )


if __name__ == "__main__":
    main()
