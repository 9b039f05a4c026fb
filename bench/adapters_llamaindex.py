"""LlamaIndex: a 3,000-token window through ChatKeepMemory vs ChatMemoryBuffer, same store.

    python -m bench.adapters_llamaindex            # full (about a minute: the buffer is slow)
    python -m bench.adapters_llamaindex --quick

Both read the very same conversation from one chatkeep SQLite store (the buffer through
``ChatKeepChatStore``), at 100 / 1,000 / 10,000 stored messages of about 75 tokens each. Each
request builds a fresh memory object, as an app does per request, and calls ``get()``:

* ``ChatKeepMemory.get()``: the store's window, from token counts stored with each message;
* ``ChatMemoryBuffer.get()``: LlamaIndex's loop, which re-tokenizes the remaining history each
  time it drops a message.

Calls alternate (chatkeep batch, buffer call, ...). The buffer is bounded: each call gets a
deadline (SIGALRM) and each size a time budget; a call that hits its deadline is reported as a
timeout with the deadline, never dropped. Figures are ratios measured in the same run.
Results: stdout and ``bench/results/llamaindex-latest.{md,json}``
(``--quick``: ``quick.llamaindex.*``, not committed).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import chatkeep

RESULTS = Path(__file__).resolve().parent / "results"
TOKEN_LIMIT = 3000


class _Deadline(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread only) by raising ``_Deadline``."""

    def fire(signum: int, frame: Any) -> None:
        raise _Deadline

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _stats(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "median_ms": statistics.median(s) * 1e3,
        "p95_ms": s[min(len(s) - 1, int(len(s) * 0.95))] * 1e3,
        "n": len(s),
    }


def fill(store: chatkeep.Store, sid: str, n: int) -> None:
    from llama_index.core.llms import ChatMessage

    from bench.run import chat_text
    from chatkeep.adapters.llamaindex import to_chatkeep

    rng = random.Random(n)
    done = 0
    while done < n:
        k = min(1000, n - done)
        batch = [
            to_chatkeep(
                ChatMessage(
                    role="user" if (done + i) % 2 == 0 else "assistant", content=chat_text(rng)
                )
            )
            for i in range(k)
        ]
        store.append(sid, batch)
        done += k


def bench_size(
    store: chatkeep.Store, n: int, *, budget: float, call_cap: float, ck_batch: int, max_calls: int
) -> dict[str, Any]:
    from llama_index.core.memory import ChatMemoryBuffer

    from chatkeep.adapters.llamaindex import ChatKeepChatStore, ChatKeepMemory

    sid = f"li-{n}"
    fill(store, sid, n)

    def ck_get() -> list[Any]:
        memory = ChatKeepMemory.from_defaults(session_id=sid, store=store, token_limit=TOKEN_LIMIT)
        return memory.get()

    def buffer_get() -> list[Any]:
        memory = ChatMemoryBuffer.from_defaults(
            chat_store=ChatKeepChatStore(store), chat_store_key=sid, token_limit=TOKEN_LIMIT
        )
        return memory.get()

    def timed(fn: Callable[[], list[Any]]) -> tuple[float, int]:
        t0 = time.perf_counter()
        out = fn()
        return time.perf_counter() - t0, len(out)

    ck_times: list[float] = []
    buf_times: list[float] = []
    timeouts = 0
    ck_len = buf_len = 0
    started = time.perf_counter()
    while len(buf_times) + timeouts < max_calls and time.perf_counter() - started < budget:
        for _ in range(ck_batch):
            t, ck_len = timed(ck_get)
            ck_times.append(t)
        try:
            with deadline(call_cap):
                t, buf_len = timed(buffer_get)
            buf_times.append(t)
        except _Deadline:
            timeouts += 1
            break  # the next call would time out too: the history did not shrink
    window = store.window(sid, TOKEN_LIMIT)
    out: dict[str, Any] = {
        "stored": n,
        "chatkeep": _stats(ck_times),
        "chatkeep_messages": ck_len,
        "chatkeep_window_tokens": window.tokens,
        "buffer": _stats(buf_times) if buf_times else None,
        "buffer_messages": buf_len if buf_times else None,
        "buffer_timeouts": timeouts,
        "buffer_deadline_s": call_cap,
    }
    if buf_times:
        out["ratio"] = out["buffer"]["median_ms"] / out["chatkeep"]["median_ms"]
    return out


def run(quick: bool) -> dict[str, Any]:
    """Measure every size; return the report (also used by ``python -m bench.run``)."""
    sizes = (100, 1_000, 10_000)
    budget, cap, batch, calls = (15.0, 10.0, 20, 3) if quick else (25.0, 20.0, 50, 3)
    t0 = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="chatkeep-bench-li-") as d:
        with chatkeep.open_store(f"sqlite:///{d}/li.db") as store:
            for n in sizes:
                print(f"llamaindex memories, {n:,} stored ...", file=sys.stderr)
                rows.append(
                    bench_size(
                        store, n, budget=budget, call_cap=cap, ck_batch=batch, max_calls=calls
                    )
                )
    flat = rows[-1]["chatkeep"]["median_ms"] / rows[0]["chatkeep"]["median_ms"]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python -m bench.adapters_llamaindex" + (" --quick" if quick else ""),
        "token_limit": TOKEN_LIMIT,
        "rows": rows,
        "chatkeep_flatness": flat,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def render(r: dict[str, Any]) -> str:
    lines = [
        f"LlamaIndex memories, {r['token_limit']:,}-token window, fresh memory per request "
        f"(`{r['command']}`, {r['date']}, {r['seconds']} s)",
        "",
        "| stored | ChatKeepMemory.get() median (p95) ms | msgs | ChatMemoryBuffer.get() "
        "median (p95) ms | msgs | buffer / chatkeep |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        ck = row["chatkeep"]
        buf = row["buffer"]
        if buf is None:
            buf_txt = f"timeout: > {row['buffer_deadline_s']:.0f} s, not finished"
            ratio = f"> {row['buffer_deadline_s'] * 1e3 / ck['median_ms']:,.0f}x"
            msgs = "—"
        else:
            extra = f", {row['buffer_timeouts']} timeout(s)" if row["buffer_timeouts"] else ""
            buf_txt = f"{buf['median_ms']:,.1f} ({buf['p95_ms']:,.1f}), n={buf['n']}{extra}"
            ratio = f"{row['ratio']:,.0f}x"
            msgs = str(row["buffer_messages"])
        lines.append(
            f"| {row['stored']:,} | {ck['median_ms']:.2f} ({ck['p95_ms']:.2f}) | "
            f"{row['chatkeep_messages']} | {buf_txt} | {msgs} | {ratio} |"
        )
    lines += [
        "",
        f"ChatKeepMemory flatness: median at {r['rows'][-1]['stored']:,} stored over the median "
        f"at {r['rows'][0]['stored']:,}: **{r['chatkeep_flatness']:.2f}x**.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run")
    quick = parser.parse_args().quick
    report = run(quick)
    md = render(report)
    print(md)
    RESULTS.mkdir(exist_ok=True)
    name = "quick.llamaindex" if quick else "llamaindex-latest"
    (RESULTS / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(md + "\n")


if __name__ == "__main__":
    main()
