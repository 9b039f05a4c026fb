"""A process SIGKILLed in the middle of replacing a conversation leaves the old list or the new
one, never an empty or mixed one (the crash the LlamaIndex set_messages used to risk)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import chatkeep
from conftest import backend_url

REPLACER = """
import sys, chatkeep
url = sys.argv[1]
with chatkeep.open_store(url) as store:
    gen = 1
    while True:
        n = 2 + gen % 7
        store.replace("crash", [
            chatkeep.Message.user(f"g{gen}-{i}") if i % 2 == 0
            else chatkeep.Message.assistant(f"g{gen}-{i}")
            for i in range(n)
        ])
        print(gen, flush=True)  # acknowledged
        gen += 1
"""


@pytest.fixture(params=["sqlite", "file", "postgres", "redis"])
def crash_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    kind = str(request.param)
    if kind == "postgres":
        from pg_support import fresh_postgres_url

        with fresh_postgres_url() as url:
            yield url
    elif kind == "redis":
        from redis_support import fresh_prefix, server_url

        with fresh_prefix(server_url()) as (url, _):
            yield url
    else:
        yield backend_url(kind, tmp_path)


def generation(texts: list[str]) -> int:
    """The one generation a list belongs to; fails on an empty or mixed list."""
    assert texts, "the conversation was lost: the list is empty"
    gens = {t.split("-")[0] for t in texts}
    assert len(gens) == 1, f"a mixed list: {texts}"
    gen = int(gens.pop().removeprefix("g"))
    assert texts == [f"g{gen}-{i}" for i in range(2 + gen % 7)], texts
    return gen


@pytest.mark.slow
def test_sigkill_during_replace_leaves_old_or_new(crash_url: str) -> None:
    rng = random.Random(4321)
    kills = int(os.environ.get("CHATKEEP_CRASH_KILLS", "6"))
    with chatkeep.open_store(crash_url) as store:
        store.replace("crash", [chatkeep.Message.user("g0-0"), chatkeep.Message.assistant("g0-1")])
    for _ in range(kills):
        proc = subprocess.Popen(
            [sys.executable, "-c", REPLACER, crash_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it is replacing
        assert first, proc.stderr.read() if proc.stderr else ""
        time.sleep(rng.uniform(0.0, 0.1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # read the rest through the same text stream: communicate() would read the raw pipe
        # and miss lines readline() had already buffered
        out = proc.stdout.read()
        proc.stdout.close()
        if proc.stderr is not None:
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        acked = [int(x) for x in [first, *out.split()]]
        with chatkeep.open_store(crash_url) as store:
            rows = store.read("crash")
            info = store.info("crash")
        gen = generation([m.text for m in rows])
        # the last acknowledged replace is durable; at most one unacknowledged one follows it
        assert gen in (acked[-1], acked[-1] + 1), (gen, acked[-1])
        assert [m.seq for m in rows] == list(range(1, len(rows) + 1))
        assert info is not None and info.total_tokens == sum(m.tokens for m in rows)
