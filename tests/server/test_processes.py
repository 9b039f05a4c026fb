"""End to end against real ``chatkeep serve`` (uvicorn) processes: several workers, --reload,
a killed and restarted server. History must stay one gapless conversation throughout."""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.server.helpers import free_port, serve

pytestmark = pytest.mark.slow


def turn(base: str, sid: str, text: str) -> httpx.Response:
    # a new connection per turn, so the kernel spreads turns over the workers
    r = httpx.post(f"{base}/v1/chat", json={"session_id": sid, "message": text}, timeout=60)
    assert r.status_code == 200, r.text
    return r


def history(base: str, sid: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/v1/sessions/{sid}/messages", params={"limit": 1000}, timeout=30)
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def assert_conversation(items: list[dict[str, Any]], turns: int) -> None:
    assert [m["seq"] for m in items] == list(range(1, 2 * turns + 1))  # gapless, no duplicates
    for user, reply in zip(items[::2], items[1::2], strict=True):
        assert (user["role"], reply["role"]) == ("user", "assistant")
        assert reply["content"].startswith("[offline responder]")
        assert user["content"] in reply["content"] or "name" in user["content"]


def test_two_workers_keep_one_gapless_history(tmp_path: Path) -> None:
    with serve(tmp_path, "--workers", "2") as (base, _):
        turn(base, "w2", "Hi, my name is Ada.")
        with cf.ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(lambda i: turn(base, "w2", f"question {i}"), range(39)))
        pids = {r.headers["x-chatkeep-worker"] for r in responses}
        assert len(pids) == 2, f"one worker served every turn: {pids}"
        items = history(base, "w2")
        assert_conversation(items, 40)
        assert {r.json()["user"]["content"] for r in responses} == {
            f"question {i}" for i in range(39)
        }
        recall = turn(base, "w2", "What is my name?").json()["reply"]
        assert "You told me your name is Ada." in recall
        metrics = httpx.get(f"{base}/metrics", timeout=30).text  # summed over both workers
        assert 'chatkeep_messages_appended_total{via="chat"} 82.0' in metrics


def test_reload_keeps_the_history(tmp_path: Path) -> None:
    watched = tmp_path / "watched"
    watched.mkdir()
    source = watched / "app_module.py"
    source.write_text("VALUE = 1\n")
    with serve(tmp_path, "--reload", "--reload-dir", str(watched)) as (base, _):
        turn(base, "rl", "Hi, my name is Grace.")
        for i in range(4):
            turn(base, "rl", f"before reload {i}")
        before = httpx.get(f"{base}/healthz", timeout=10).json()["pid"]
        source.write_text("VALUE = 2\n")  # a code change: uvicorn restarts the worker
        deadline = time.monotonic() + 60
        while True:
            try:
                now = httpx.get(f"{base}/readyz", timeout=2).json()["pid"]
                if now != before:
                    break
            except (httpx.TransportError, ValueError):
                pass
            assert time.monotonic() < deadline, "the server did not reload"
            time.sleep(0.2)
        for i in range(4):
            turn(base, "rl", f"after reload {i}")
        recall = turn(base, "rl", "What is my name?").json()["reply"]
        assert "You told me your name is Grace." in recall
        assert_conversation(history(base, "rl"), 10)


def test_killed_and_restarted_server_keeps_the_history(tmp_path: Path) -> None:
    port = free_port()
    with serve(tmp_path, port=port) as (base, proc):
        turn(base, "rs", "Hi, my name is Hopper.")
        for i in range(3):
            turn(base, "rs", f"first life {i}")
        first_pid = httpx.get(f"{base}/healthz", timeout=10).json()["pid"]
        traced = httpx.get(
            f"{base}/v1/sessions/rs", headers={"X-Request-ID": "trace-e2e-1"}, timeout=10
        )
        assert traced.headers["x-request-id"] == "trace-e2e-1"
        # The access line is written just after the response leaves: wait for it (bounded)
        # before the kill, or a busy machine races the log write against SIGKILL.
        deadline = time.monotonic() + 20
        while not any("trace-e2e-1" in p.read_text() for p in tmp_path.glob("serve-*.log")):
            assert time.monotonic() < deadline, "the access log line never appeared"
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # no graceful shutdown at all
        proc.wait(30)
    logs = []
    for path in tmp_path.glob("serve-*.log"):
        lines = path.read_text().splitlines()
        assert lines[0].startswith("chatkeep serve: http://127.0.0.1:")  # the one human line
        logs += [json.loads(line) for line in lines[1:]]  # then JSON, every line
    access = [e for e in logs if e.get("request_id") == "trace-e2e-1"]
    assert access and access[0]["path"] == "/v1/sessions/rs" and access[0]["status"] == 200
    assert access[0]["tenant"] == "default" and access[0]["pid"] == first_pid
    with serve(tmp_path, port=free_port()) as (base, _):
        assert httpx.get(f"{base}/healthz", timeout=10).json()["pid"] != first_pid
        recall = turn(base, "rs", "What is my name?").json()["reply"]
        assert "You told me your name is Hopper." in recall
        items = history(base, "rs")
        assert_conversation(items, 5)
        assert re.search(r"first life 2", items[7]["content"])
