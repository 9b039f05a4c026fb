"""``Idempotency-Key`` on ``POST /v1/chat``: a retried turn is stored once and the LLM is called
once (within the look-back; beyond it the store still refuses the duplicate append)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.server.helpers import StubLLM, serve
from tests.server.test_llm import sse_events

from chatkeep.server.idempotency import LOOKBACK


@pytest.fixture
def llm() -> Iterator[StubLLM]:
    with StubLLM() as stub:
        yield stub


def _history(client: TestClient, sid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = client.get(
        f"/v1/sessions/{sid}/messages", params={"limit": 1000}
    ).json()["items"]
    return items


def _stream(client: TestClient, body: dict[str, Any], key: str) -> dict[str, list[Any]]:
    events: dict[str, list[Any]] = {}
    with client.stream(
        "POST", "/v1/chat", json={**body, "stream": True}, headers={"Idempotency-Key": key}
    ) as r:
        assert r.status_code == 200
        for name, data in sse_events(r.iter_lines()):
            events.setdefault(name, []).append(data)
    return events


def test_a_retried_turn_is_stored_once_and_the_llm_called_once(
    make_client: Callable[..., TestClient], llm: StubLLM
) -> None:
    client = make_client(llm_base_url=llm.base_url, llm_model="m")
    body = {"session_id": "idem", "message": "book a table"}
    first = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "k-1"})
    again = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert first.json()["replayed"] is False and again.json()["replayed"] is True
    assert again.json()["reply"] == first.json()["reply"] == "stub: book a table (2 messages)"
    assert again.json()["assistant"] == first.json()["assistant"]
    assert len(llm.seen) == 1
    assert llm.seen[0]["messages"][-1] == {"role": "user", "content": "book a table"}
    history = _history(client, "idem")
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["metadata"]["idempotency"]["key"] == "k-1"
    # a new key is a new turn
    third = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "k-2"}).json()
    assert third["replayed"] is False and third["user"]["seq"] == 3
    assert len(llm.seen) == 2
    # keys are per session: the same key on another session is a different turn
    other = client.post(
        "/v1/chat", json={**body, "session_id": "idem-2"}, headers={"Idempotency-Key": "k-1"}
    ).json()
    assert other["replayed"] is False and len(llm.seen) == 3


def test_the_same_key_with_another_message_is_refused(
    make_client: Callable[..., TestClient], llm: StubLLM
) -> None:
    client = make_client(llm_base_url=llm.base_url, llm_model="m")
    client.post(
        "/v1/chat", json={"session_id": "s", "message": "a"}, headers={"Idempotency-Key": "k"}
    )
    r = client.post(
        "/v1/chat", json={"session_id": "s", "message": "b"}, headers={"Idempotency-Key": "k"}
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "idempotency_key_reused" and "'k'" in error["message"]
    assert len(llm.seen) == 1 and len(_history(client, "s")) == 2
    # the lease was released: the session takes a new turn at once
    ok = client.post("/v1/chat", json={"session_id": "s", "message": "b"})
    assert ok.status_code == 200


@pytest.mark.parametrize("key", [" ", "x" * 257, "tab\there"])
def test_a_bad_key_is_refused_before_anything_happens(
    make_client: Callable[..., TestClient], llm: StubLLM, key: str
) -> None:
    client = make_client(llm_base_url=llm.base_url, llm_model="m")
    r = client.post(
        "/v1/chat", json={"session_id": "bad", "message": "hi"}, headers={"Idempotency-Key": key}
    )
    assert r.status_code in (400, 422), r.text
    assert r.json()["error"]["code"] in ("invalid_input", "invalid_request")
    assert llm.seen == [] and client.get("/v1/sessions/bad").status_code == 404


def test_a_retried_stream_returns_the_stored_reply(
    make_client: Callable[..., TestClient], llm: StubLLM
) -> None:
    client = make_client(llm_base_url=llm.base_url, llm_model="m")
    body = {"session_id": "st", "message": "tell me"}
    first = _stream(client, body, "s-1")
    (done,) = first["done"]
    assert done["replayed"] is False and "".join(d["text"] for d in first["delta"]) == done["reply"]
    retry = _stream(client, body, "s-1")
    assert retry["start"][0]["replayed"] is True
    assert "".join(d["text"] for d in retry["delta"]) == done["reply"]
    assert retry["done"][0]["replayed"] is True
    assert retry["done"][0]["assistant"] == done["assistant"]
    # and a plain retry of a streamed turn replays it too
    plain = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "s-1"}).json()
    assert plain["replayed"] is True and plain["reply"] == done["reply"]
    assert len(llm.seen) == 1 and len(_history(client, "st")) == 2


def test_a_retry_while_the_first_attempt_runs_waits_and_replays(
    make_client: Callable[..., TestClient],
) -> None:
    with StubLLM(delay=0.5) as llm:
        client = make_client(llm_base_url=llm.base_url, llm_model="m")
        body = {"session_id": "race", "message": "slow one"}
        results: list[httpx.Response] = []

        def send() -> None:
            results.append(client.post("/v1/chat", json=body, headers={"Idempotency-Key": "r"}))

        threads = [threading.Thread(target=send) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert sorted(r.json()["replayed"] for r in results) == [False, True, True]
    assert len({json.dumps(r.json()["assistant"]) for r in results}) == 1
    assert len(llm.seen) == 1 and len(_history(client, "race")) == 2


def test_beyond_the_look_back_the_store_still_refuses_the_duplicate(
    make_client: Callable[..., TestClient], llm: StubLLM
) -> None:
    """The documented bound: past LOOKBACK newer messages the LLM is called again, but the
    append's idempotency key still stores nothing and the original reply comes back."""
    client = make_client(llm_base_url=llm.base_url, llm_model="m")
    body = {"session_id": "far", "message": "old question"}
    first = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "old"}).json()
    filler = [{"role": "user", "content": f"note {i}"} for i in range(LOOKBACK)]
    assert client.post("/v1/sessions/far/messages", json={"messages": filler}).status_code == 201
    again = client.post("/v1/chat", json=body, headers={"Idempotency-Key": "old"}).json()
    assert again["replayed"] is True and again["assistant"] == first["assistant"]
    assert len(llm.seen) == 2  # the bound: the LLM was asked again
    assert len(_history(client, "far")) == 2 + LOOKBACK  # but nothing was stored twice
    changed = client.post(
        "/v1/chat", json={**body, "message": "other"}, headers={"Idempotency-Key": "old"}
    )
    assert changed.status_code == 422 and len(_history(client, "far")) == 2 + LOOKBACK


def test_a_retry_to_a_restarted_server_replays(tmp_path: Path) -> None:
    """The key lives in the store: a retry sent to a new server process is still a replay."""
    with StubLLM() as llm:
        env = {"CHATKEEP_LLM_BASE_URL": llm.base_url, "CHATKEEP_LLM_MODEL": "m"}
        body = {"session_id": "proc", "message": "persist me"}
        headers = {"Idempotency-Key": "p-1"}
        with serve(tmp_path, env=env) as (base, _):
            first = httpx.post(f"{base}/v1/chat", json=body, headers=headers, timeout=30).json()
        with serve(tmp_path, env=env) as (base, _):
            again = httpx.post(f"{base}/v1/chat", json=body, headers=headers, timeout=30).json()
            items = httpx.get(f"{base}/v1/sessions/proc/messages", timeout=10).json()["items"]
    assert first["replayed"] is False and again["replayed"] is True
    assert again["assistant"] == first["assistant"]
    assert len(llm.seen) == 1 and len(items) == 2
