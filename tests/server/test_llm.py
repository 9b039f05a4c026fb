"""LLM providers against a local OpenAI-compatible stub server (the real wire protocol)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.server.helpers import StubLLM, serve

from chatkeep.server.llm import OfflineResponder


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: ") and name:
            yield name, json.loads(line[6:])


@pytest.fixture
def llm() -> Iterator[StubLLM]:
    with StubLLM() as stub:
        yield stub


def test_chat_through_an_openai_compatible_endpoint(
    make_client: Callable[..., TestClient], llm: StubLLM
) -> None:
    client = make_client(
        llm_base_url=llm.base_url, llm_model="stub-model", system_prompt="Be brief."
    )
    info = client.get("/v1/server").json()["provider"]
    assert info == {"name": "openai-compatible", "model": "stub-model", "offline": False}
    first = client.post("/v1/chat", json={"session_id": "s", "message": "hello"}).json()
    assert first["reply"] == "stub: hello (2 messages)"
    second = client.post("/v1/chat", json={"session_id": "s", "message": "again"}).json()
    assert second["reply"] == "stub: again (4 messages)"
    sent = llm.seen[-1]
    assert sent["model"] == "stub-model"
    assert sent["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello"},
        {"role": "assistant", "content": "stub: hello (2 messages)"},
        {"role": "user", "content": "again"},
    ]


def test_streaming_appends_only_when_complete(
    make_client: Callable[..., TestClient], llm: StubLLM
) -> None:
    client = make_client(llm_base_url=llm.base_url, llm_model="m")
    client.post("/v1/chat", json={"session_id": "st", "message": "first"})
    with client.stream(
        "POST", "/v1/chat", json={"session_id": "st", "message": "tell me more", "stream": True}
    ) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = list(sse_events(r.iter_lines()))
    names = [n for n, _ in events]
    assert names[0] == "start" and names[-1] == "done" and names.count("delta") >= 4
    text = "".join(d["text"] for n, d in events if n == "delta")
    assert text == "stub: tell me more (4 messages)"
    assert events[0][1]["window"]["in_window"] == [1, 2]
    done = events[-1][1]
    assert done["assistant"]["content"] == text and done["assistant"]["seq"] == 4
    stored = client.get("/v1/sessions/st/messages").json()["items"]
    assert [m["content"] for m in stored][-2:] == ["tell me more", text]


def test_llm_failure_is_502_and_stores_nothing(
    make_client: Callable[..., TestClient], llm: StubLLM
) -> None:
    client = make_client(llm_base_url=llm.base_url, llm_model="m", lease_policy="reject")
    llm.fail = True
    r = client.post("/v1/chat", json={"session_id": "f", "message": "hi"})
    assert r.status_code == 502 and r.json()["error"]["code"] == "llm_error"
    with client.stream(
        "POST", "/v1/chat", json={"session_id": "f", "message": "hi", "stream": True}
    ) as s:
        events = list(sse_events(s.iter_lines()))
    assert [n for n, _ in events] == ["start", "error"]
    assert events[-1][1]["error"]["code"] == "llm_error"
    assert client.get("/v1/sessions/f").status_code == 404  # nothing appended
    llm.fail = False  # the lease was released both times: reject policy lets the next turn in
    assert client.post("/v1/chat", json={"session_id": "f", "message": "hi"}).status_code == 200


@pytest.mark.slow
def test_client_disconnect_mid_stream_appends_nothing(tmp_path: Path) -> None:
    with (
        StubLLM(chunk_delay=0.3) as llm,
        serve(
            tmp_path, "--llm-base-url", llm.base_url, "--llm-model", "m", "--lease-policy", "reject"
        ) as (base, _),
    ):
        with httpx.stream(
            "POST",
            f"{base}/v1/chat",
            json={"session_id": "d", "message": "a long answer please", "stream": True},
            timeout=30,
        ) as r:
            seen = []
            for name, _data in sse_events(r.iter_lines()):
                seen.append(name)
                if seen.count("delta") == 2:
                    break  # hang up mid-stream
        assert seen[0] == "start"
        deadline = time.monotonic() + 15
        while True:  # the lease is released once the server notices the disconnect
            r2 = httpx.post(
                f"{base}/v1/chat", json={"session_id": "d", "message": "again"}, timeout=30
            )
            if r2.status_code == 200 or time.monotonic() > deadline:
                break
            assert r2.json()["error"]["code"] == "session_busy"
            time.sleep(0.2)
        assert r2.status_code == 200, r2.text
        history = httpx.get(f"{base}/v1/sessions/d/messages").json()["items"]
        assert [m["content"] for m in history] == ["again", r2.json()["reply"]]


def test_offline_responder_reads_only_its_window() -> None:
    bot = OfflineResponder()
    reply = bot.reply(
        [
            {"role": "system", "content": "Summary of the earlier conversation:\nstuff"},
            {"role": "user", "content": "My name is Ada Lovelace"},
            {"role": "assistant", "content": "hi"},
            {"role": "user", "content": "what did I say?"},
        ]
    )
    assert reply.startswith("[offline responder]")
    assert "You told me your name is Ada Lovelace." in reply and "plus a summary" in reply
    assert "name" not in bot.reply([{"role": "user", "content": "what did I say?"}]).split("]")[1]
