"""Database restarts under load, counted: the engine of the fault tests and of ``make soak``.

:func:`run_fault_cycles` starts a private PostgreSQL or Redis (tests/reliability/servers.py),
keeps writers appending to it, and restarts the server ``cycles`` times under that load (stop,
stay down ``down`` seconds, start again on the same port and data). Writers are threads using
one sync ``Store``, tasks on one ``AsyncStore``, or HTTP clients of a real ``chatkeep serve``
process (``via="http"``). Every write is a user message plus its reply, with an idempotency
key; a write that fails with ``StoreUnavailable`` (or HTTP 503) is retried with the same key
until it is acknowledged, the way a careful client does.

At the end it reads every session back with a fresh store and counts what matters: writes
acknowledged, acknowledged writes lost, writes stored twice, sessions with seq gaps, failures
seen during outages (and whether each 503 carried ``Retry-After``), how long a failing call
took, and how long the same store (or server) took to recover after the database was back.
Bounded throughout: every wait has a deadline, and the function stops by itself.
"""

from __future__ import annotations

import asyncio
import bisect
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.reliability.servers import PostgresServer, RedisServer

import chatkeep
from chatkeep import AppendResult, Message, StoreUnavailable

KINDS = ("postgres", "redis")
SESSIONS = 3  # writers share these sessions, so per-session ordering is exercised too
FINISH_SECONDS = 60.0  # after the last cycle, how long writers may take to get their last ack


@dataclass
class Attempt:
    started: float
    ended: float
    outcome: str  # "ack", "unavailable", "http_503", "error"


@dataclass
class Ledger:
    """What the writers saw, shared by all of them (under one lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[str, int] = field(default_factory=dict)  # key -> first_seq acknowledged
    attempts: list[Attempt] = field(default_factory=list)
    pending: set[str] = field(default_factory=set)
    retry_after_missing: int = 0
    errors: list[str] = field(default_factory=list)

    def note(self, started: float, outcome: str, key: str, first_seq: int | None = None) -> None:
        with self.lock:
            self.attempts.append(Attempt(started, time.monotonic(), outcome))
            if outcome == "ack":
                assert first_seq is not None
                self.acked[key] = first_seq
                self.pending.discard(key)
            else:
                self.pending.add(key)

    def error(self, started: float, key: str, what: str) -> None:
        with self.lock:
            if len(self.errors) < 100:
                self.errors.append(f"{key}: {what}")
        self.note(started, "error", key)

    def no_retry_after(self) -> None:
        with self.lock:
            self.retry_after_missing += 1

    def first_ack_after(self, moment: float) -> float | None:
        """When the first write started at or after ``moment`` was acknowledged."""
        first = None
        with self.lock:  # attempts are in the order they ended: scan back to ``moment`` only
            for a in reversed(self.attempts):
                if a.ended < moment:
                    break
                if a.outcome == "ack" and a.started >= moment:
                    first = a.ended
        return first


def _batch(key: str) -> list[Message]:
    return [Message.user(key), Message.assistant(f"{key}-r")]


def _session(i: int) -> str:
    return f"s{i % SESSIONS}"


# -- writers -----------------------------------------------------------------------------------


def _sync_writers(url: str, n: int, ledger: Ledger, stop: threading.Event) -> Iterator[None]:
    store = chatkeep.open_store(url)  # ONE store for the whole run: it must recover by itself

    def write(w: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"w{w}-{i}"
            deadline = None
            while True:
                started = time.monotonic()
                try:
                    r = store.append(_session(i), _batch(key), idempotency_key=key)
                except StoreUnavailable:
                    ledger.note(started, "unavailable", key)
                except Exception as exc:
                    ledger.error(started, key, f"{type(exc).__name__}: {exc}")
                else:
                    ledger.note(started, "ack", key, r.first_seq)
                    break
                if stop.is_set():
                    deadline = deadline or time.monotonic() + FINISH_SECONDS
                    if time.monotonic() > deadline:
                        return
                time.sleep(0.05)
            i += 1

    threads = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(n)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(FINISH_SECONDS + 30)
        store.close()


def _async_writers(url: str, n: int, ledger: Ledger, stop: threading.Event) -> Iterator[None]:
    async def write(store: chatkeep.AsyncStore, w: int) -> None:
        i = 0
        while not stop.is_set():
            key = f"w{w}-{i}"
            deadline = None
            while True:
                started = time.monotonic()
                try:
                    r: AppendResult = await store.append(
                        _session(i), _batch(key), idempotency_key=key
                    )
                except StoreUnavailable:
                    ledger.note(started, "unavailable", key)
                except Exception as exc:
                    ledger.error(started, key, f"{type(exc).__name__}: {exc}")
                else:
                    ledger.note(started, "ack", key, r.first_seq)
                    break
                if stop.is_set():
                    deadline = deadline or time.monotonic() + FINISH_SECONDS
                    if time.monotonic() > deadline:
                        return
                await asyncio.sleep(0.05)
            i += 1

    async def main() -> None:
        async with await chatkeep.open_async_store(url) as store:  # one store for the run
            await asyncio.gather(*(write(store, w) for w in range(n)))

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(FINISH_SECONDS + 30)


def _http_writers(
    base: str, n: int, ledger: Ledger, stop: threading.Event, chat: bool = False
) -> Iterator[None]:
    """HTTP clients: ``POST /v1/sessions/{id}/messages`` with the batch, or with ``chat`` a
    ``POST /v1/chat`` turn (lease, window, offline responder, append) per write."""
    import httpx

    def send(client: httpx.Client, i: int, key: str) -> tuple[httpx.Response, str]:
        if chat:
            body = {"session_id": _session(i), "message": key}
            r = client.post("/v1/chat", json=body, headers={"Idempotency-Key": key})
            return r, "user"
        batch = [{"role": m.role, "content": m.text} for m in _batch(key)]
        r = client.post(
            f"/v1/sessions/{_session(i)}/messages",
            json={"messages": batch},
            headers={"Idempotency-Key": key},
        )
        return r, "first_seq"

    def write(w: int) -> None:
        i = 0
        with httpx.Client(base_url=base, timeout=30) as client:
            while not stop.is_set():
                key = f"w{w}-{i}"
                deadline = None
                while True:
                    started = time.monotonic()
                    wait = 0.05
                    try:
                        r, seq_field = send(client, i, key)
                    except httpx.HTTPError as exc:  # the server itself must never go away
                        ledger.error(started, key, f"{type(exc).__name__}: {exc}")
                    else:
                        if r.status_code in (200, 201):
                            answer = r.json()[seq_field]
                            seq = answer["seq"] if chat else answer
                            ledger.note(started, "ack", key, seq)
                            break
                        if r.status_code == 503:
                            retry_after = r.headers.get("retry-after")
                            if retry_after is None or not retry_after.isdigit():
                                ledger.no_retry_after()
                            else:  # a polite client waits as told
                                wait = float(retry_after)
                            ledger.note(started, "http_503", key)
                        else:
                            ledger.error(started, key, f"HTTP {r.status_code}: {r.text[:200]}")
                    if stop.is_set():
                        deadline = deadline or time.monotonic() + FINISH_SECONDS
                        if time.monotonic() > deadline:
                            return
                    time.sleep(wait)
                i += 1

    threads = [threading.Thread(target=write, args=(w,), daemon=True) for w in range(n)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(FINISH_SECONDS + 40)


class ReadyProbe:
    """Polls ``/readyz`` every 0.1 s in a thread; keeps (time asked, status, has
    Retry-After)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.seen: list[tuple[float, int, bool]] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.is_set():
                asked = time.monotonic()  # when asked: a 503 may take pool_timeout to come
                try:
                    r = client.get("/readyz")
                    self.seen.append((asked, r.status_code, "retry-after" in r.headers))
                except httpx.HTTPError as exc:
                    self.errors.append(f"/readyz: {type(exc).__name__}: {exc}")
                self._stop.wait(0.1)

    def __enter__(self) -> ReadyProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(20)

    def ready_after(self, moment: float) -> float | None:
        return next((t for t, status, _ in self.seen if t >= moment and status == 200), None)


# -- the cycles --------------------------------------------------------------------------------


def store_url(kind: str, server: PostgresServer | RedisServer, tag: str) -> str:
    """A store URL on ``server`` with short, bounded timeouts and a fresh namespace."""
    if kind == "postgres":
        return f"{server.url}?schema=ck_{tag}&pool_timeout=2&connect_timeout=1"
    return f"{server.url}?prefix=ck_{tag}&timeout=2&connect_timeout=1"


@contextmanager
def _server(kind: str, given: PostgresServer | RedisServer | None) -> Iterator[Any]:
    if given is not None:
        yield given
        return
    if kind == "postgres":
        pg = PostgresServer()
        try:
            pg.start()
            yield pg
        finally:
            pg.close()
        return
    with tempfile.TemporaryDirectory(prefix="chatkeep-redis-") as folder:
        rs = RedisServer(Path(folder))
        try:
            rs.start()
            yield rs
        finally:
            rs.close()


def _read_back(url: str) -> dict[str, list[tuple[int, str, str]]]:
    with chatkeep.open_store(url) as store:
        return {
            sid: [(m.seq, m.role, m.text) for m in store.read(sid)]
            for sid in (_session(i) for i in range(SESSIONS))
        }


def check(
    rows: dict[str, list[tuple[int, str, str]]], ledger: Ledger, *, chat: bool = False
) -> dict[str, Any]:
    """Lost, duplicated, torn and misnumbered writes, from what the store holds (a chat turn's
    reply is the offline responder's, so only its role is known)."""
    users = Counter(text for msgs in rows.values() for _, role, text in msgs if role == "user")
    seq_of = {text: seq for msgs in rows.values() for seq, role, text in msgs if role == "user"}
    gaps = sum(
        1 for msgs in rows.values() if [s for s, _, _ in msgs] != list(range(1, len(msgs) + 1))
    )
    torn = 0  # a user message not followed by its own reply: a half-stored batch
    for msgs in rows.values():
        for (_, role, text), nxt in zip(msgs, [*msgs[1:], None], strict=True):
            if role == "user" and (
                nxt is None or nxt[1] != "assistant" or (not chat and nxt[2] != f"{text}-r")
            ):
                torn += 1
    return {
        "stored": sum(users.values()),
        "lost": sum(1 for key in ledger.acked if users[key] == 0),
        "duplicated": sum(1 for n in users.values() if n > 1),
        "wrong_seq": sum(1 for k, seq in ledger.acked.items() if seq_of.get(k, seq) != seq),
        "gaps": gaps,
        "torn": torn,
    }


def _wait_for(moment: Callable[[float], float | None], since: float, timeout: float) -> float:
    """Seconds from ``since`` until ``moment(since)`` gives a time (polled; bounded)."""
    deadline = since + timeout
    at = moment(since)
    while at is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no recovery {timeout:g}s after the restart")
        time.sleep(0.05)
        at = moment(since)
    return at - since


def run_fault_cycles(
    kind: str,
    cycles: int,
    *,
    via: str = "library",
    api: str = "sync",
    writers: int = 4,
    down: float = 1.0,
    warm: float = 0.7,
    modes: tuple[str, ...] | None = None,
    recovery_timeout: float = 60.0,
    server: PostgresServer | RedisServer | None = None,
    workdir: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Restart a private ``kind`` server (postgres | redis) ``cycles`` times under load.

    ``via``: ``"library"`` (``api`` ``"sync"`` or ``"async"``), ``"http"`` (appends to a real
    ``chatkeep serve`` process on the server) or ``"chat"`` (chat turns on that process).
    ``modes`` alternate over the cycles (default: PostgreSQL ``fast`` and ``immediate``; Redis
    ``shutdown`` and ``kill``). ``server`` reuses a started server of the right kind (it is
    left running); else one is made and removed. Returns the counts described in the module
    docstring (see the keys)."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r}; expected one of {KINDS}")
    if via not in ("library", "http", "chat") or api not in ("sync", "async"):
        raise ValueError(f"via={via!r} api={api!r}")
    say = progress or (lambda _: None)
    tag = f"faults_{uuid.uuid4().hex[:10]}"
    ledger = Ledger()
    stop = threading.Event()
    outages: list[tuple[float, float]] = []  # (stop began, start returned)
    recovery: list[float] = []
    ready_recovery: list[float] = []
    readyz_503 = 0
    with ExitStack() as stack:
        srv = stack.enter_context(_server(kind, server))
        modes = modes or srv.MODES
        url = store_url(kind, srv, tag)
        chatkeep.open_store(url).close()  # create the schema before the first outage
        probe: ReadyProbe | None = None
        if via in ("http", "chat"):
            from tests.server.helpers import serve

            folder = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
            base, _ = stack.enter_context(serve(folder, env={"CHATKEEP_URL": url}))
            probe = stack.enter_context(ReadyProbe(base))
            load = contextmanager(_http_writers)(base, writers, ledger, stop, via == "chat")
        elif api == "sync":
            load = contextmanager(_sync_writers)(url, writers, ledger, stop)
        else:
            load = contextmanager(_async_writers)(url, writers, ledger, stop)
        with load:  # leaving it stops the writers and waits for their last acknowledgement
            time.sleep(warm)
            for cycle in range(cycles):
                mode = modes[cycle % len(modes)]
                began = time.monotonic()
                srv.stop(mode)
                time.sleep(down)
                srv.start()
                up = time.monotonic()
                outages.append((began, up))
                recovery.append(_wait_for(ledger.first_ack_after, up, recovery_timeout))
                if probe is not None:
                    ready_recovery.append(_wait_for(probe.ready_after, up, recovery_timeout))
                say(f"{kind} {mode} restart {cycle + 1}/{cycles}: recovered in {recovery[-1]:.2f}s")
                time.sleep(warm)
        if probe is not None:
            down_503 = [
                has_header
                for t, status, has_header in probe.seen
                if status == 503 and any(a <= t <= b for a, b in outages)
            ]
            readyz_503 = len(down_503)
            ledger.retry_after_missing += down_503.count(False)
        result = check(_read_back(url), ledger, chat=via == "chat")
    failures = [a for a in ledger.attempts if a.outcome in ("unavailable", "http_503")]
    windows = [(b, u + r) for (b, u), r in zip(outages, recovery, strict=True)]  # in order
    starts = [b for b, _ in windows]

    def in_outage(t: float) -> bool:
        i = bisect.bisect_right(starts, t) - 1
        return i >= 0 and t <= windows[i][1]

    during = [a for a in ledger.attempts if in_outage(a.started)]
    return {
        "kind": kind,
        "via": f"library-{api}" if via == "library" else via,
        "restarts": len(outages),
        "modes": list(modes),
        "down_seconds": down,
        "acked": len(ledger.acked),
        **result,
        "pending": len(ledger.pending),
        "requests_during_outage": len(during),
        "unavailable": len(failures),
        "http_503": sum(1 for a in failures if a.outcome == "http_503"),
        "retry_after_missing": ledger.retry_after_missing,
        "readyz_503": readyz_503,
        "failure_seconds_max": round(max((a.ended - a.started for a in failures), default=0), 3),
        "recovery_seconds": [round(r, 3) for r in recovery],
        "recovery_median_s": round(statistics.median(recovery), 3) if recovery else None,
        "recovery_max_s": round(max(recovery), 3) if recovery else None,
        "ready_recovery_max_s": round(max(ready_recovery), 3) if ready_recovery else None,
        "errors": ledger.errors[:10] + (probe.errors[:5] if probe else []),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.reliability.faults_lib --cycles 10``: every kind x way, as JSON lines;
    exit 1 if anything acknowledged was lost or duplicated."""
    import argparse
    import json
    import logging

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--kind", choices=KINDS, action="append")
    ways = ["library-sync", "library-async", "http", "chat"]
    parser.add_argument("--via", choices=ways, action="append")
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--down", type=float, default=2.0, help="seconds each outage lasts")
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args(argv)
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    bad = 0
    for kind in args.kind or KINDS:
        for way in args.via or ways:
            via, _, api = way.partition("-")
            r = run_fault_cycles(
                kind, args.cycles, via=via, api=api or "sync", down=args.down, writers=args.writers
            )
            print(json.dumps(r), flush=True)
            bad += bool(r["lost"] or r["duplicated"] or r["errors"] or r["retry_after_missing"])
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
