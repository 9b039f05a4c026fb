"""Persistence across real process boundaries: a second process, 4 writers, SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path

import pytest

import chatkeep
from conftest import backend_url

DURABLE = ("sqlite", "file")


def run_py(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("kind", DURABLE)
def test_a_second_process_sees_the_conversation(kind: str, tmp_path: Path) -> None:
    url = backend_url(kind, tmp_path)
    writer = run_py(
        """
        import sys, chatkeep
        with chatkeep.open_store(sys.argv[1]) as store:
            mem = chatkeep.Memory("user-1", store=store)
            mem.add("user", "My name is Ada.")
            mem.add("assistant", "Nice to meet you, Ada.")
        """,
        url,
    )
    assert writer.returncode == 0, writer.stderr
    reader = run_py(
        """
        import sys, json, chatkeep
        with chatkeep.open_store(sys.argv[1]) as store:
            print(json.dumps(chatkeep.Memory("user-1", store=store).messages()))
        """,
        url,
    )
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.strip() == (
        '[{"role": "user", "content": "My name is Ada."}, '
        '{"role": "assistant", "content": "Nice to meet you, Ada."}]'
    )


def race(script: str, url: str, *, processes: int, count: int) -> None:
    """Run ``script URL pN COUNT`` in ``processes`` processes at once; all must succeed."""
    with chatkeep.open_store(url):
        pass  # create the schema/folder once, so the processes race only on the work
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, url, f"p{n}", str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err


WRITER = """
import sys, chatkeep
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with chatkeep.open_store(url) as store:
    for i in range(n):
        store.append("shared", chatkeep.Message.user(f"{name}-{i}"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", DURABLE)
def test_four_processes_append_to_one_session(kind: str, tmp_path: Path) -> None:
    url = backend_url(kind, tmp_path)
    race(WRITER, url, processes=4, count=250)
    with chatkeep.open_store(url) as store:
        rows = store.read("shared")
    assert [m.seq for m in rows] == list(range(1, 1001))
    texts = Counter(m.text for m in rows)
    assert set(texts.values()) == {1}
    assert set(texts) == {f"p{n}-{i}" for n in range(4) for i in range(250)}


CRASHER = """
import sys, chatkeep
url, run = sys.argv[1], sys.argv[2]
with chatkeep.open_store(url) as store:
    i = 0
    while True:
        text = f"{run}-{i}"
        store.append("crash", [chatkeep.Message.user(text), chatkeep.Message.assistant(text)])
        print(text, flush=True)  # acknowledged only after append returned
        i += 1
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", DURABLE)
def test_sigkill_loses_no_acknowledged_append(kind: str, tmp_path: Path) -> None:
    url = backend_url(kind, tmp_path)
    rng = random.Random(1234)
    kills = int(os.environ.get("CHATKEEP_CRASH_KILLS", "12"))
    acked: list[str] = []
    with chatkeep.open_store(url):
        pass
    for run in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", CRASHER, url, f"r{run}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it is writing
        assert first, proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        acked += [first.strip(), *out.split()]
    with chatkeep.open_store(url) as store:
        rows = store.read("crash")
    assert [m.seq for m in rows] == list(range(1, len(rows) + 1))
    users = [m.text for m in rows if m.role == "user"]
    assistants = [m.text for m in rows if m.role == "assistant"]
    assert users == assistants  # batches are all-or-nothing
    counts = Counter(users)
    assert all(counts[a] == 1 for a in acked), "an acknowledged append was lost or duplicated"
    assert len(acked) >= kills
    if kind == "sqlite":
        path = url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


TURNS = """
import sys, time, chatkeep
url, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
with chatkeep.open_store(url) as store:
    mem = chatkeep.Memory("turns", store=store, lease_timeout=120)
    for i in range(n):
        with mem.turn(f"q {name}-{i}") as t:
            seen = len(t.messages)
            time.sleep(0.005)  # the LLM call
            t.reply(f"a {name}-{i} after {seen}")
"""


@pytest.mark.slow
@pytest.mark.parametrize("kind", DURABLE)
def test_turns_from_three_processes_never_interleave(kind: str, tmp_path: Path) -> None:
    url = backend_url(kind, tmp_path)
    race(TURNS, url, processes=3, count=15)
    with chatkeep.open_store(url) as store:
        rows = store.read("turns")
    assert len(rows) == 90 and [m.seq for m in rows] == list(range(1, 91))
    for i in range(0, 90, 2):
        q, a = rows[i], rows[i + 1]
        assert q.role == "user" and a.role == "assistant"
        who = q.text.removeprefix("q ")
        # each answer directly follows its own question, and saw every earlier message
        assert a.text == f"a {who} after {i + 1}"
