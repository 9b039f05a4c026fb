"""SIGKILL a writer at random moments, over and over, and check what survived after each kill.

Each round starts a fresh writer process (``workers.crash``) that first retries what the
previous one had in flight (same idempotency key, as a client would), then appends, takes turns
and replaces at random. Two rounds in four (``n % 4`` in 1, 2: so both flavours also meet the
Redis server kills of odd rounds) run the async writer instead (``workers_async.crash``:
``AsyncStore`` / ``AsyncMemory``, the same operations), so each flavour retries what the other
had in flight and both are checked against the same ledger.

Usually the round waits for its first acknowledgement, then a random 0-250 ms; one round in ten
(never the first) kills at a random moment from the start instead (during opening, migrations,
the first write). On the file backend 4 rounds in 10 kill 0-200 ms after the writer announces a
300 KB message instead, hoping to land inside its ``write`` and leave a torn line behind. On
``redis-aof`` every other round SIGKILLs the Redis server first, then the writer, and restarts
the server from its AOF.

After every kill, with nothing running: SQLite's ``PRAGMA integrity_check``, a scan of the file
backend's folder for a torn last line, then a fresh store reads every session and
:class:`~tests.reliability.ledger.CrashLedger` checks it against what was acknowledged.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.reliability.ledger import BIG, CrashLedger, read_acks
from tests.reliability.targets import Target

import chatkeep

BIG_DO = b'"big":%d' % BIG  # in the "do" line of an append carrying a big message
ROOT = Path(__file__).resolve().parents[2]  # the repository: workers run as tests.reliability.*


def spawn(mode: str, *args: str, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.workers", mode, *args],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def wait_for_ack(proc: subprocess.Popen[bytes], acks: Path, log: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not (acks.exists() and b'"t":"ok"' in acks.read_bytes()):
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise AssertionError(f"the writer exited ({proc.returncode}): {tail}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"the writer acknowledged nothing in {seconds:g}s")
        time.sleep(0.005)


def aim_at_big_write(acks: Path, rng: random.Random, seconds: float = 5) -> int:
    """Return (so the caller kills) 0-200 ms after the writer announces a 300 KB message (an
    append of one takes about that long): the kill may land inside its ``write``. 1 if one
    was announced in time."""
    seen = acks.read_bytes().count(BIG_DO)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if acks.read_bytes().count(BIG_DO) > seen:
            time.sleep(rng.uniform(0.0, 0.2))
            return 1
        time.sleep(0.0005)
    return 0


def torn_tails(folder: Path) -> int:
    """Session files of the file backend whose last line has no newline (a cut write)."""
    return sum(1 for p in folder.rglob("*.jsonl") if (d := p.read_bytes()) and d[-1:] != b"\n")


def integrity(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


def async_round(n: int) -> bool:
    """Whether round ``n`` runs the async writer: 1 and 2 of every 4 (never the first)."""
    return n % 4 in (1, 2)


def run_crash(
    target: Target,
    kills: int,
    seed: int,
    work: Path,
    *,
    deadline: float | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """``kills`` rounds on ``target`` (fewer if ``time.monotonic()`` passes ``deadline``);
    returns the figures and every problem found. ``progress`` gets the figures so far after
    every round."""
    rng = random.Random(seed)
    ledger = CrashLedger()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "workers.log"
    figures = {
        "kills": 0,
        "server_kills": 0,
        "early_kills": 0,
        "aimed_kills": 0,
        "torn_tails": 0,
        "integrity_checks": 0,
        "reads_after_kill": 0,
        "async_kills": 0,  # rounds whose writer was the async one
        "async_early_kills": 0,
        "async_acked": 0,  # writes those acknowledged
    }
    started = time.monotonic()
    with chatkeep.open_store(target.url):
        pass  # create the schema once (the early kills then also hit a store being opened)

    def summary() -> dict[str, Any]:
        return {
            "backend": target.name,
            "seed": seed,
            **figures,
            **ledger.stats,
            "problems": ledger.problems[:20],
            "seconds": round(time.monotonic() - started, 1),
        }

    retry = ""
    for n in range(kills):
        if deadline is not None and time.monotonic() > deadline:
            break
        acks = work / f"acks-{n}.jsonl"
        asynchronous = async_round(n)
        mode = "crash-async" if asynchronous else "crash"
        proc = spawn(mode, target.url, str(acks), str(rng.randrange(1 << 30)), retry, log=log)
        early = rng.random() < 0.1 and n > 0  # the first round always writes something
        if early:
            figures["early_kills"] += 1
            time.sleep(rng.uniform(0.0, 0.4))
        else:
            wait_for_ack(proc, acks, log, 60)
            if target.file_dir is not None and rng.random() < 0.4:
                figures["aimed_kills"] += aim_at_big_write(acks, rng)
            else:
                time.sleep(rng.uniform(0.0, 0.25))
        server_kill = target.server is not None and n % 2 == 1
        if server_kill:
            target.server.kill()
            time.sleep(rng.uniform(0.0, 0.05))
        proc.kill()
        code = proc.wait(timeout=30)
        figures["kills"] += 1
        figures["server_kills"] += int(server_kill)
        if code != -9 and not (server_kill and code == 1):  # 1: it saw the server die first
            tail = log.read_text()[-2000:]
            ledger.problems.append(f"round {n}: the writer exited {code}: {tail}")
        if server_kill:
            target.server.start()  # same port and folder: the AOF is replayed
        acked_before = ledger.stats["acked"]
        flight = ledger.absorb(read_acks(acks))
        if asynchronous:
            figures["async_kills"] += 1
            figures["async_early_kills"] += int(early)
            figures["async_acked"] += ledger.stats["acked"] - acked_before
        retry = ""
        if flight is not None and flight["op"] != "replace":
            retry = json.dumps({k: v for k, v in flight.items() if k != "t"})
        if target.file_dir is not None and target.file_dir.exists():
            figures["torn_tails"] += torn_tails(target.file_dir)
        if target.sqlite_path is not None:
            figures["integrity_checks"] += 1
            if (verdict := integrity(target.sqlite_path)) != "ok":
                ledger.problems.append(f"round {n}: integrity_check says {verdict}")
        with chatkeep.open_store(target.url) as store:
            ledger.check(store)
        figures["reads_after_kill"] += 1
        if progress is not None:
            progress(summary())
        if ledger.problems:
            break  # the first failure is the one worth reading
    return summary()
