"""What encryption at rest costs on SQLite: append, window and read, against the same calls
on the same kind of store without it, measured in the same run.

    python -m bench.encryption [--quick]

Three stores, each on its own database file, filled alike (400 messages of ~60 characters):

- ``bare``: the backend with no wrapper at all (how stores were opened before encryption);
- ``guard``: ``encryption=False``: the wrapper every durable store now has without a key (it
  only checks that no row is encrypted);
- ``encrypted``: a key set: every body sealed on append, opened on read.

The machine is shared and noisy, so each figure is a median over rounds that alternate the
stores' order, and the result is a ratio to ``bare`` measured in the same rounds. Appends use
``synchronous=normal`` (no fsync per commit) so the CPU cost of sealing is not hidden behind
the disk; with the default ``full`` the ratios are closer to 1.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import chatkeep
from chatkeep import Message, Store
from chatkeep.crypto import generate_key
from chatkeep.stores import make_backend

BUDGET = 3000
KINDS = ("bare", "guard", "encrypted")


def _open(kind: str, url: str) -> Store:
    if kind == "bare":
        return Store(make_backend(url), url=url).open()
    return chatkeep.open_store(url, encryption=generate_key() if kind == "encrypted" else False)


def _fill(store: Store) -> None:
    for i in range(200):
        store.append(
            "s",
            [
                Message.user(f"question {i}: what about the weather in Oslo tomorrow?"),
                Message.assistant(f"answer {i}: mild, 12 degrees, some rain in the evening."),
            ],
        )


def _ms(fn: Callable[[], Any], calls: int) -> float:
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e3


def run(rounds: int, calls: int) -> dict[str, dict[str, float]]:
    times: dict[str, dict[str, list[float]]] = {
        op: {k: [] for k in KINDS} for op in ("append", "window", "read50")
    }
    with tempfile.TemporaryDirectory() as tmp:
        stores = {k: _open(k, f"sqlite:///{tmp}/{k}.db?synchronous=normal") for k in KINDS}
        try:
            for s in stores.values():
                _fill(s)
            pair = [Message.user("and the day after?"), Message.assistant("sunny, 15 degrees.")]
            for r in range(rounds):
                order = KINDS if r % 2 == 0 else tuple(reversed(KINDS))
                for k in order:
                    st = stores[k]
                    times["append"][k].append(
                        _ms(lambda st=st, r=r: st.append(f"a{r}", pair), calls)
                    )
                    times["window"][k].append(_ms(lambda st=st: st.window("s", BUDGET), calls))
                    times["read50"][k].append(
                        _ms(lambda st=st: st.read("s", limit=50, newest=True), calls)
                    )
        finally:
            for s in stores.values():
                s.close()
    return {op: {k: statistics.median(v) for k, v in per.items()} for op, per in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 10 s)")
    args = parser.parse_args()
    result = run(rounds=6 if args.quick else 20, calls=20 if args.quick else 50)
    print(
        "| operation (SQLite) | bare ms | guard ms | encrypted ms | guard / bare | "
        "encrypted / bare |"
    )
    print("|---|---|---|---|---|---|")
    for op, m in result.items():
        print(
            f"| {op} | {m['bare']:.3f} | {m['guard']:.3f} | {m['encrypted']:.3f} | "
            f"{m['guard'] / m['bare']:.2f}x | {m['encrypted'] / m['bare']:.2f}x |"
        )


if __name__ == "__main__":
    main()
