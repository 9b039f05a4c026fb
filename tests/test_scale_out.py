"""Scale-out proof: two app server processes, each on its own port, continue one conversation
through a shared store; a restarted server picks it up too.

``KINDS`` lists the shared stores this runs on; each kind names a helper that yields a fresh
store URL (and cleans up). Adding a store is one word in ``KINDS`` once its helper exists.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import chatkeep

KINDS = ("postgres", "redis")


@contextmanager
def _postgres() -> Iterator[str]:
    from pg_support import fresh_postgres_url

    with fresh_postgres_url() as url:
        yield url


@contextmanager
def _redis() -> Iterator[str]:
    from redis_support import fresh_prefix, server_url  # the redis store's test helper

    with fresh_prefix(server_url()) as (url, _prefix):
        yield url


FRESH_URL = {"postgres": _postgres, "redis": _redis}  # kind -> a fresh store URL, cleaned up


APP = Path(__file__).with_name("scale_app.py")


def fresh_url(kind: str) -> AbstractContextManager[str]:
    return FRESH_URL[kind]()


class Server:
    """One app server process on a port the OS picked."""

    def __init__(self, url: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(APP), url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise AssertionError(f"server did not start: {line!r} {self.proc.stderr.read()}")  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{int(line.split()[1])}"
        deadline = time.monotonic() + 30
        while True:
            try:
                r = httpx.get(f"{self.base}/healthz", timeout=2)
                if r.status_code == 200:
                    self.pid = int(r.json()["pid"])
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"server not ready: {self.proc.stderr.read()}")  # type: ignore[union-attr]
            time.sleep(0.1)

    def chat(self, session_id: str, text: str) -> dict[str, Any]:
        r = httpx.post(f"{self.base}/chat/{session_id}", json={"text": text}, timeout=30)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # uvicorn shuts down: lifespan closes store
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@contextmanager
def servers(url: str, n: int) -> Iterator[list[Server]]:
    started: list[Server] = []
    try:
        for _ in range(n):
            started.append(Server(url))
        yield started
    finally:
        for s in started:
            s.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_two_app_servers_continue_one_conversation(kind: str) -> None:
    with fresh_url(kind) as url, servers(url, 2) as (a, b):
        assert a.pid != b.pid and a.base != b.base
        answers = []
        for i in range(6):  # alternate: a, b, a, b, ...
            server = (a, b)[i % 2]
            got = server.chat("user-42", f"message {i}")
            assert got["pid"] == server.pid
            # each turn's prompt holds the whole conversation so far, whoever served it
            assert len(got["seen"]) == 2 * i + 1
            assert got["seen"][0] == "message 0"
            assert got["seen"][-1] == f"message {i}"
            if i:
                assert got["seen"][-2] == answers[-1]
            answers.append(got["answer"])
        # a different conversation stays separate
        assert b.chat("user-7", "hello")["seen"] == ["hello"]

        a.stop()  # a restart: a new process continues where the old ones left off
        with servers(url, 1) as (c,):
            got = c.chat("user-42", "after restart")
            assert len(got["seen"]) == 13 and got["seen"][0] == "message 0"

        with chatkeep.open_store(url) as store:  # this process never served a request
            rows = store.read("user-42")
        assert [m.seq for m in rows] == list(range(1, 15))
        assert [m.role for m in rows] == ["user", "assistant"] * 7
        assert [m.text for m in rows[::2]] == [f"message {i}" for i in range(6)] + ["after restart"]
        pids = [int(m.text.split()[1]) for m in rows[1::2]]
        assert pids == [a.pid, b.pid] * 3 + [c.pid]
