"""The REST API in-process (TestClient as a context manager: the lifespan opens the store)."""

from __future__ import annotations

import concurrent.futures as cf
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from tests.server.helpers import StubLLM

import chatkeep


def append(client: TestClient, sid: str, *texts: str, **headers: str) -> Any:
    msgs = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(texts)
    ]
    return client.post(f"/v1/sessions/{sid}/messages", json={"messages": msgs}, headers=headers)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["code"] == code
    assert body["error"]["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(body["error"])


def test_append_read_and_page(client: TestClient) -> None:
    r = append(client, "user:42/thread:7", *[f"m{i}" for i in range(7)])
    assert r.status_code == 201 and (r.json()["first_seq"], r.json()["last_seq"]) == (1, 7)
    seqs, after = [], 0
    while True:
        page = client.get(
            "/v1/sessions/user:42/thread:7/messages", params={"after_seq": after, "limit": 3}
        ).json()
        seqs += [m["seq"] for m in page["items"]]
        if page["next_after_seq"] is None:
            break
        after = page["next_after_seq"]
    assert seqs == list(range(1, 8))
    info = client.get("/v1/sessions/user:42/thread:7").json()
    assert info["message_count"] == 7 and info["session_id"] == "user:42/thread:7"


def test_idempotency_key_replays_without_storing(client: TestClient) -> None:
    first = append(client, "s1", "hello", **{"Idempotency-Key": "req-1"})
    again = append(client, "s1", "hello", **{"Idempotency-Key": "req-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["replayed"] is True
    assert again.json()["messages"] == first.json()["messages"]
    assert client.get("/v1/sessions/s1").json()["message_count"] == 1


def test_sessions_list_pages_and_prefix(client: TestClient) -> None:
    for sid in ("a-1", "a-2", "a-3", "b-1"):
        append(client, sid, "hi")
    page1 = client.get("/v1/sessions", params={"prefix": "a-", "limit": 2}).json()
    assert [s["session_id"] for s in page1["items"]] == ["a-1", "a-2"]
    page2 = client.get(
        "/v1/sessions", params={"prefix": "a-", "limit": 2, "cursor": page1["next_cursor"]}
    ).json()
    assert [s["session_id"] for s in page2["items"]] == ["a-3"]
    assert page2["next_cursor"] is None
    everyone = client.get("/v1/sessions").json()["items"]
    assert [s["session_id"] for s in everyone] == ["a-1", "a-2", "a-3", "b-1"]


def test_window_matches_the_store(client: TestClient, tmp_path: Path) -> None:
    append(client, "w", *[f"message number {i} " * 5 for i in range(20)])
    view = client.get("/v1/sessions/w/window", params={"token_limit": 120}).json()
    assert view["budget"] == 120 and view["dropped"] > 0 and view["system_prompt"]["tokens"] > 0
    assert view["tokens"] <= 120
    with chatkeep.open_store(f"sqlite:///{tmp_path}/server.db") as store:
        memory = chatkeep.Memory(
            "w", store=store, token_limit=120, system_prompt=view["system_prompt"]["text"]
        )
        expected = [m.seq for m in memory.window().all_messages]
    assert view["in_window"] == expected and expected[-1] == 20
    assert [m["seq"] for m in view["messages"]] == expected


def test_summary_get_put_and_window(client: TestClient) -> None:
    append(client, "s", "my name is Ada", "hello Ada", "what now", "anything")
    assert_error(client.get("/v1/sessions/s/summary"), 404, "not_found")
    put = client.put(
        "/v1/sessions/s/summary", json={"text": "User is Ada.", "covers_through_seq": 2}
    )
    assert put.status_code == 200 and put.json()["covers_through_seq"] == 2
    assert client.get("/v1/sessions/s/summary").json()["text"] == "User is Ada."
    view = client.get("/v1/sessions/s/window").json()
    assert view["summary"]["text"] == "User is Ada." and view["in_window"] == [3, 4]
    assert_error(
        client.put("/v1/sessions/nobody/summary", json={"text": "x", "covers_through_seq": 0}),
        404,
        "not_found",
    )


def test_delete(client: TestClient) -> None:
    append(client, "gone", "hi")
    assert client.delete("/v1/sessions/gone").status_code == 204
    assert_error(client.get("/v1/sessions/gone"), 404, "not_found")
    assert_error(client.get("/v1/sessions/gone/messages"), 404, "not_found")
    assert_error(client.delete("/v1/sessions/gone"), 404, "not_found")


def test_errors_have_one_shape(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096)
    assert_error(client.get("/v1/nothing-here"), 404, "not_found")
    assert_error(client.patch("/v1/sessions"), 405, "method_not_allowed")
    assert_error(append(client, "x", "y" * 5000), 413, "payload_too_large")
    assert_error(
        client.post("/v1/sessions/x/messages", content=b"{not json"), 422, "invalid_request"
    )
    assert_error(
        client.post("/v1/sessions/x/messages", json={"messages": []}), 422, "invalid_request"
    )
    bad_role = client.post("/v1/sessions/x/messages", json={"messages": [{"role": "robot"}]})
    assert "unknown role" in assert_error(bad_role, 400, "invalid_input")["message"]
    bell = assert_error(append(client, "bad%07id", "hi"), 400, "invalid_input")
    assert "control character" in bell["message"]
    too_long = assert_error(client.get("/v1/sessions/" + "x" * 300), 400, "invalid_input")
    assert "limit is 256" in too_long["message"]
    orphan = {"messages": [{"role": "tool", "content": "42"}]}
    assert_error(client.post("/v1/sessions/x/messages", json=orphan), 400, "invalid_input")
    # nothing of any refused request was stored
    assert client.get("/v1/sessions").json()["items"] == []


def test_chunked_body_over_the_limit_is_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_body_bytes=4096)
    body = json.dumps({"messages": [{"role": "user", "content": "z" * 10_000}]}).encode()
    r = client.post(
        "/v1/sessions/c/messages",
        content=(body[i : i + 1000] for i in range(0, len(body), 1000)),  # no Content-Length
        headers={"content-type": "application/json"},
    )
    assert_error(r, 413, "payload_too_large")
    assert client.get("/v1/sessions").json()["items"] == []


def test_unexpected_errors_are_500_without_details(client: TestClient) -> None:
    state = client.app.state.chatkeep  # type: ignore[attr-defined]

    async def broken(*a: Any, **kw: Any) -> Any:
        raise RuntimeError("secret internals /etc/passwd")

    state.view("default").info = broken  # fault injection on the real store view
    r = client.get("/v1/sessions/anything")
    err = assert_error(r, 500, "internal_error")
    assert "secret" not in r.text and "passwd" not in err["message"]


def test_request_ids_in_and_out(client: TestClient) -> None:
    r = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    r = client.get("/v1/sessions/nope", headers={"X-Request-ID": "evil id with spaces"})
    assert (
        r.headers["x-request-id"] != "evil id with spaces" and len(r.headers["x-request-id"]) == 32
    )
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]


def test_health_ready_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json()["status"] == "ok"
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["store"] == {"scheme": "sqlite", "persistent": True}
    client.post("/v1/chat", json={"session_id": "m", "message": "hi"})
    client.get("/v1/sessions/m/window")
    text = client.get("/metrics").text
    for name in (
        'chatkeep_http_requests_total{method="POST",route="/v1/chat",status="200"} 1.0',
        'chatkeep_messages_appended_total{via="chat"} 2.0',
        "chatkeep_window_tokens_count 2.0",
        "chatkeep_lease_wait_seconds_count 1.0",
        'chatkeep_http_request_duration_seconds_count{method="GET",'
        'route="/v1/sessions/{session_id:sid}/window"} 1.0',
    ):
        assert name in text, name


def test_readyz_reports_an_unreachable_store(client: TestClient) -> None:
    state = client.app.state.chatkeep  # type: ignore[attr-defined]

    async def down(**kw: Any) -> Any:
        raise chatkeep.StoreUnavailable("disk I/O error")

    state.store.sessions = down
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
    assert r.headers["retry-after"] == "1"


def test_offline_chat_remembers_and_is_labelled(client: TestClient) -> None:
    info = client.get("/v1/server").json()
    assert info["provider"] == {"name": "offline", "model": "offline-responder", "offline": True}
    first = client.post("/v1/chat", json={"session_id": "ada", "message": "Hi, my name is Ada."})
    assert first.status_code == 200 and first.json()["reply"].startswith("[offline responder]")
    client.post("/v1/chat", json={"session_id": "ada", "message": "I like tea."})
    recall = client.post(
        "/v1/chat", json={"session_id": "ada", "message": "What is my name?"}
    ).json()
    assert "You told me your name is Ada." in recall["reply"]
    assert "\u201cI like tea.\u201d" in recall["reply"]
    assert (recall["user"]["seq"], recall["assistant"]["seq"]) == (5, 6)
    history = client.get("/v1/sessions/ada/messages").json()["items"]
    assert [m["role"] for m in history] == ["user", "assistant"] * 3


def test_offline_chat_only_knows_what_the_window_holds(client: TestClient) -> None:
    client.post("/v1/chat", json={"session_id": "small", "message": "my name is Grace"})
    for i in range(6):
        client.post("/v1/chat", json={"session_id": "small", "message": f"filler {i} " * 20})
    tiny = client.post(
        "/v1/chat", json={"session_id": "small", "message": "what is my name?", "token_limit": 80}
    ).json()
    assert "Grace" not in tiny["reply"] and 1 not in tiny["window"]["in_window"]
    full = client.post(
        "/v1/chat", json={"session_id": "small", "message": "what is my name?"}
    ).json()
    assert "Grace" in full["reply"]


def _concurrent_turns(client: TestClient, n: int) -> list[Any]:
    with cf.ThreadPoolExecutor(n) as pool:
        futures = [
            pool.submit(client.post, "/v1/chat", json={"session_id": "busy", "message": f"q{i}"})
            for i in range(n)
        ]
        return [f.result(timeout=60) for f in futures]


def test_concurrent_turns_queue_and_never_interleave(
    make_client: Callable[..., TestClient],
) -> None:
    with StubLLM(delay=0.2) as llm:
        client = make_client(llm_base_url=llm.base_url, llm_model="stub")
        results = _concurrent_turns(client, 4)
        assert [r.status_code for r in results] == [200] * 4
        history = client.get("/v1/sessions/busy/messages").json()["items"]
        assert [m["seq"] for m in history] == list(range(1, 9))
        for user, reply in zip(history[::2], history[1::2], strict=True):
            assert user["role"] == "user" and reply["role"] == "assistant"
            assert reply["content"].startswith(f"stub: {user['content']} ")
        # each turn saw every earlier turn complete: 1, 3, 5, 7 messages (+ system prompt)
        assert sorted(len(b["messages"]) for b in llm.seen) == [2, 4, 6, 8]
        waits = [r.json()["window"]["lease_wait_ms"] for r in results]
        assert max(waits) >= 200  # somebody queued behind a 0.2 s LLM call


def test_concurrent_turns_with_reject_get_409(make_client: Callable[..., TestClient]) -> None:
    with StubLLM(delay=0.5) as llm:
        client = make_client(llm_base_url=llm.base_url, llm_model="stub", lease_policy="reject")
        results = _concurrent_turns(client, 3)
        codes = sorted(r.status_code for r in results)
        assert codes[0] == 200 and 409 in codes
        for r in results:
            if r.status_code == 409:
                assert_error(r, 409, "session_busy")
        history = client.get("/v1/sessions/busy/messages").json()["items"]
        assert len(history) == 2 * codes.count(200)


def test_queued_turn_that_waits_too_long_is_503(make_client: Callable[..., TestClient]) -> None:
    with StubLLM(delay=1.5) as llm:
        client = make_client(llm_base_url=llm.base_url, llm_model="stub", lease_timeout=0.3)
        results = _concurrent_turns(client, 2)
        assert sorted(r.status_code for r in results) == [200, 503]
        late = next(r for r in results if r.status_code == 503)
        assert late.headers["retry-after"] == "1"  # a queued turn that timed out: retry
        assert "waited 0.3s" in assert_error(late, 503, "session_busy_timeout")["message"]
        assert len(client.get("/v1/sessions/busy/messages").json()["items"]) == 2


def test_bad_settings_exit_2_with_a_message(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "chatkeep.cli", "serve", "--lease-policy", "sometimes"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2 and "lease_policy must be 'queue' or 'reject'" in out.stderr
    assert "Traceback" not in out.stderr


def test_missing_server_extra_names_the_extra() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['fastapi'] = None\n"
        "import chatkeep.cli\n"  # the CLI itself does not need the extra
        "try:\n"
        "    from chatkeep.server import create_app\n"
        "except chatkeep.MissingDependency as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", "import chatkeep\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "pip install 'chatkeep[server]'" in out.stdout


def test_settings_from_env_round_trip() -> None:
    from chatkeep.server.settings import Settings

    env = {
        "CHATKEEP_URL": "sqlite:///x.db",
        "CHATKEEP_PORT": "9001",
        "CHATKEEP_LEASE_TIMEOUT": "2.5",
        "CHATKEEP_LEASE_POLICY": "reject",
        "CHATKEEP_LLM_BASE_URL": "http://127.0.0.1:1/v1",
        "CHATKEEP_LLM_MODEL": "m",
    }
    s = Settings.from_env(env, token_limit=500)
    assert (s.store_url, s.port, s.lease_timeout, s.lease_policy) == (
        "sqlite:///x.db",
        9001,
        2.5,
        "reject",
    )
    assert s.token_limit == 500 and s.loopback
    assert Settings.from_env(s.to_env()) == s
    for bad, message in (
        ({"CHATKEEP_PORT": "eighty"}, "not a number"),
        ({"CHATKEEP_LLM_BASE_URL": "http://x/v1"}, "needs a model"),
        ({"CHATKEEP_MAX_BODY_BYTES": "10"}, "at least 1024"),
    ):
        try:
            Settings.from_env(bad)
        except chatkeep.InvalidInput as exc:
            assert message in str(exc)
        else:
            raise AssertionError(f"{bad} was accepted")
