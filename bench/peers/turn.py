"""Full chat turn: each framework's own memory API with its offline LLM double, as histories grow.

    python -m bench.peers.turn            # full: 100 / 1,000 / 10,000 stored messages
    python -m bench.peers.turn --quick    # 100 / 1,000, fewer turns

A turn is one request of a chat web app: a fresh memory/history/session object over the
long-lived store, load the window (3,000 tokens where the framework has one), call the LLM
double, store the user message and the reply (``turn_contenders.py`` says how each framework is
called). Before timing, every contender's session gets the same history (~75-token messages,
user and assistant alternating) through its own bulk call and one untimed turn. Then the turns
are timed round by round with the contenders in a rotated order. After each turn (outside the
timed part) the prompt the LLM double received must contain the previous turn's question (and
the current one): a contender that skipped loading or storing fails as ``error``, so none is
timed doing less work. A turn past its deadline is a ``timeout``; that contender's larger
sizes are then skipped and reported with the same status and the reason.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.peers import rows as R

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")

TARGET = "bench.peers.turn"
# contender of the concurrency workload whose store (and defaults) a turn contender uses: its
# durability is read from that contender's own connection
SAME_STORE = {
    "chatkeep sqlite": "chatkeep sqlite",
    "chatkeep postgres": "chatkeep postgres",
    "chatkeep redis": "chatkeep redis",
    "chatkeep ChatKeepMemory (LlamaIndex)": "chatkeep sqlite",
    "LlamaIndex ChatMemoryBuffer + SQLiteChatStore": "LlamaIndex SQLiteChatStore",
    "LlamaIndex ChatMemoryBuffer + PostgresChatStore": "LlamaIndex PostgresChatStore",
    "LlamaIndex ChatMemoryBuffer + RedisChatStore": "LlamaIndex RedisChatStore",
    "LlamaIndex Memory + SQLAlchemyChatStore": "LlamaIndex Memory + SQLAlchemyChatStore",
    "chatkeep with_chatkeep_history (LangChain)": "chatkeep sqlite",
    "chatkeep ChatKeepMessageHistory (LangChain)": "chatkeep sqlite",
    "LangChain SQLChatMessageHistory sqlite": "LangChain SQLChatMessageHistory sqlite",
    "LangChain SQLChatMessageHistory postgres": "LangChain SQLChatMessageHistory postgres",
    "LangChain RedisChatMessageHistory": "LangChain RedisChatMessageHistory",
    "langchain-postgres PostgresChatMessageHistory": (
        "langchain-postgres PostgresChatMessageHistory"
    ),
    "chatkeep ChatKeepSession (Agents)": "chatkeep sqlite",
    "Agents SQLiteSession": "Agents SQLiteSession",
    "Agents SQLiteSession limit=40": "Agents SQLiteSession",
}


class Deadline(Exception):
    pass


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` (main thread) by raising ``Deadline``."""

    def fire(signum: int, frame: Any) -> None:
        raise Deadline(f"> {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def history(n: int) -> list[tuple[str, str]]:
    from bench.peers.writers import text

    return [("user" if i % 2 == 0 else "assistant", text(f"h{n}-{i}")) for i in range(n)]


def durabilities(names: list[str], env: Any) -> dict[str, str]:
    """Each store's durability, read on its own connection (via the concurrency contenders)."""
    from bench.peers.writers import CONTENDERS

    out: dict[str, str] = {}
    for store in {SAME_STORE[n] for n in names if n in SAME_STORE}:
        cls = CONTENDERS[store]
        c = cls(env, -1)
        try:
            c.open()
            out[store] = c.durability()
        except Exception as exc:
            out[store] = f"unknown ({type(exc).__name__})"
        finally:
            try:
                c.close()
                cls.cleanup(env)
            except Exception:
                pass
    return {n: out.get(SAME_STORE.get(n, ""), "not read") for n in names}


def _error(exc: BaseException) -> str:
    first = str(exc).strip().splitlines()[0][:150] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}"


def run(
    quick: bool,
    progress: Callable[[str], None] = print,
    *,
    classes: list[type[Any]] | None = None,
    sizes: tuple[int, ...] | None = None,
    turns: dict[int, int] | None = None,
) -> list[R.Row]:
    """Rows per contender (every one, or ``classes``) and history size."""
    from bench.peers.turn_contenders import REPLY, SEEN, TURN_CONTENDERS, prompt_text
    from bench.peers.writers import Env, text

    sizes = sizes or ((100, 1_000) if quick else (100, 1_000, 10_000))
    turns = turns or ({100: 4, 1_000: 3} if quick else {100: 12, 1_000: 8, 10_000: 5})
    turn_timeout = 5.0 if quick else 10.0
    fill_timeout = 60.0 if quick else 120.0
    tmp = tempfile.TemporaryDirectory(prefix="chatkeep-peers-turn-")
    tag = uuid.uuid4().hex[:10]
    env = Env(tmp=tmp.name, pg=_pg(), redis=_redis(), tag=f"ckpt_{tag}")
    contenders = [cls(env) for cls in classes or TURN_CONTENDERS]
    progress(f"turn: reading durability of {len(contenders)} contenders")
    dur = durabilities(
        [c.name for c in contenders], Env(tmp.name, env.pg, env.redis, f"ckpd_{tag}")
    )
    rows: list[R.Row] = []
    stopped: dict[str, tuple[str, str]] = {}  # name -> (status, why): larger sizes skipped

    def row(c: Any, size: int, **kw: Any) -> R.Row:
        return R.Row(
            workload="turn", contender=c.name, family=c.family, backend=c.backend,
            durability=dur[c.name], history=size, **kw,
        )  # fmt: skip

    for c in contenders:
        try:
            with deadline(60):
                c.open()
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            stopped[c.name] = (
                R.TIMEOUT if isinstance(exc, Deadline) else R.ERROR,
                f"open: {_error(exc)}",
            )
    try:
        for size in sizes:
            sid = f"s{size}"
            live = [c for c in contenders if c.name not in stopped]
            for c in contenders:
                if c.name in stopped and c not in live:
                    status, why = stopped[c.name]
                    rows.append(row(c, size, status=status, note=f"skipped: {why}"))
            progress(f"turn: {size:,} messages: filling {len(live)} contenders")
            msgs = history(size)
            prev: dict[str, str] = {}
            fill_s: dict[str, float] = {}
            samples: dict[str, list[float]] = {c.name: [] for c in live}
            failed: dict[str, tuple[str, str]] = {}
            for c in live:
                t0 = time.perf_counter()
                try:
                    with deadline(fill_timeout):
                        c.fill(sid, msgs)
                    fill_s[c.name] = time.perf_counter() - t0
                    prev[c.name] = f"[h{size}-{size - 1}]"
                except Exception as exc:
                    status = R.TIMEOUT if isinstance(exc, Deadline) else R.ERROR
                    failed[c.name] = (status, f"fill: {_error(exc)}")
            progress(f"turn: {size:,} messages: {turns[size]} timed turns each")
            for r in range(turns[size] + 1):  # round 0: one untimed turn (first-use costs)
                k = r % max(1, len(live))
                for c in live[k:] + live[:k]:
                    if c.name in failed:
                        continue
                    q = f"[q{size}-{r}]"
                    REPLY["text"] = text(f"a{size}-{r}")
                    SEEN.clear()
                    t0 = time.perf_counter()
                    try:
                        with deadline(turn_timeout):
                            c.turn(sid, f"{q} What did we say about the travel costs?")
                        dt = time.perf_counter() - t0
                    except Exception as exc:
                        status = R.TIMEOUT if isinstance(exc, Deadline) else R.ERROR
                        failed[c.name] = (status, f"turn {r}: {_error(exc)}")
                        continue
                    seen = prompt_text(SEEN.get("prompt", ""))
                    if prev[c.name] not in seen or q not in seen:
                        failed[c.name] = (
                            R.ERROR,
                            f"turn {r}: the LLM double's prompt lacks "
                            f"{prev[c.name] if prev[c.name] not in seen else q}",
                        )
                        continue
                    prev[c.name] = q
                    if r > 0:
                        samples[c.name].append(dt)
            for c in live:
                s = samples[c.name]
                extra = {"fill_s": round(fill_s.get(c.name, 0.0), 2), "checked_prev_turn": True}
                if c.name in failed:
                    status, why = failed[c.name]
                    stopped[c.name] = (status, f"{why} at {size:,}")
                    t = R.timing(s) if s else {}
                    rows.append(row(c, size, status=status, note=why, extra=extra, **t))
                else:
                    rows.append(row(c, size, extra=extra, **R.timing(s)))
    finally:
        for c in contenders:
            try:
                c.close()
            except Exception as exc:
                progress(f"turn: closing {c.name}: {_error(exc)}")
        tmp.cleanup()
    return rows


def _pg() -> str:
    from bench.peers.concurrency import pg_url

    return pg_url()


def _redis() -> str:
    from bench.peers.concurrency import redis_url

    return redis_url()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from bench.peers import venv

    venv.reexec(TARGET, sys.argv[1:])
    started = time.monotonic()
    rows = run(args.quick, progress=lambda s: print(s, file=sys.stderr, flush=True))
    path = R.save(
        "turn",
        rows,
        quick=args.quick,
        meta={
            "seconds": round(time.monotonic() - started, 1),
            "command": f"python -m {TARGET}" + (" --quick" if args.quick else ""),
        },
    )
    for r in rows:
        med = f"{r.median_ms:9.2f}" if r.median_ms is not None else "        -"
        p95 = f"{r.p95_ms:9.2f}" if r.p95_ms is not None else "        -"
        print(f"{r.contender:48} {r.history:>6} {r.status:8} median={med} p95={p95} {r.note}")
    print(path)


if __name__ == "__main__":
    main()
