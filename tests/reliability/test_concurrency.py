"""8 processes x 3 threads doing everything at once on shared sessions: no loss, no
duplicate, no interleaved turn, no unexpected error (see concurrency.py for what runs and what
is checked). Half the processes are the async flavour (AsyncStore / AsyncMemory, 3 coroutines
on one event loop). In CI: SQLite (the embedded default), PostgreSQL (whose async code is its
own) and Redis; `make soak` runs every backend for longer."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from tests.reliability.concurrency import run_soak
from tests.reliability.targets import Target
from tests.reliability.workers import OPS

import chatkeep
from chatkeep import Message

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", ["sqlite", "postgres", "redis"])
def test_eight_processes_keep_every_invariant(
    name: str,
    seed: int,
    target: Callable[[str], AbstractContextManager[Target]],
    tmp_path: Path,
) -> None:
    with target(name) as t:
        figures = run_soak(t, processes=8, threads=3, seconds=5, seed=seed, work=tmp_path / "w")
    replay = f"replay with CHATKEEP_RELIABILITY_SEED={seed}: {figures}"
    assert figures["problems"] == [] and figures["violations"] == 0, replay
    assert figures["unexpected_errors"] == 0, replay
    assert figures["lost"] == 0 and figures["duplicated"] == 0, replay
    assert set(figures["ops"]) == {kind for kind, _ in OPS}, replay  # every kind really ran
    assert figures["async_processes"] == 4, replay  # both flavours ran every kind
    assert set(figures["async_ops"]) == {kind for kind, _ in OPS}, replay
    assert 0 < figures["async_ops_total"] < figures["ops_total"], replay
    assert figures["acked_on_append_only"] > 0, replay


@pytest.mark.parametrize("name", ["sqlite", "file", "postgres", "redis"])
def test_writes_racing_deletes_of_their_session_never_fail(
    name: str, target: Callable[[str], AbstractContextManager[Target]]
) -> None:
    """Regression: on PostgreSQL an append, replace or summary that had to (re)create its
    session could find the row it had just seen deleted under it and crash with a TypeError
    (found by the soak). Every write must either happen or raise a documented error."""
    errors: list[str] = []
    stop = time.monotonic() + 1.5

    def hammer(write: Callable[[int], object]) -> None:
        i = 0
        while time.monotonic() < stop:
            i += 1
            try:
                write(i)
            except Exception as exc:  # every failure is one
                errors.append(f"{type(exc).__name__}: {exc}")

    with target(name) as t, chatkeep.open_store(t.url) as store:
        writes: list[Callable[[int], object]] = [
            lambda i: store.append("s", Message.user(f"a{i}")),
            lambda i: store.append("s", Message.user(f"k{i}"), idempotency_key=f"k{i}"),
            lambda i: store.replace("s", [Message.user(f"r{i}")]),
            lambda i: store.put_summary("s", "summary", 0),
            lambda i: store.delete("s"),
            lambda i: store.delete("s"),
        ]
        threads = [threading.Thread(target=hammer, args=(w,)) for w in writes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rows = store.read("s")
    assert errors == [], errors[:5]
    assert [m.seq for m in rows] == list(range(1, len(rows) + 1))
