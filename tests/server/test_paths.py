"""Session ids with slashes in URLs: greedy matching, and ``%2F`` keeping an id whole."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import httpx
from fastapi.testclient import TestClient
from tests.server.helpers import serve


def _append(client: TestClient, path_id: str, text: str) -> None:
    r = client.post(
        f"/v1/sessions/{path_id}/messages", json={"messages": [{"role": "user", "content": text}]}
    )
    assert r.status_code == 201, r.text


def test_an_id_ending_in_messages_is_reachable_percent_encoded(client: TestClient) -> None:
    _append(client, "x", "for x")
    _append(client, quote("x/messages", safe=""), "for x/messages")
    # plain: the messages of "x"; encoded: the info of "x/messages"
    plain = client.get("/v1/sessions/x/messages").json()["items"]
    assert [m["content"] for m in plain] == ["for x"]
    info = client.get("/v1/sessions/x%2Fmessages").json()
    assert info["session_id"] == "x/messages" and info["message_count"] == 1
    items = client.get("/v1/sessions/x%2fmessages/messages").json()["items"]  # lower-case too
    assert [m["content"] for m in items] == ["for x/messages"]
    # unencoded slashes still work as before (greedy match of the id)
    items = client.get("/v1/sessions/x/messages/messages").json()["items"]
    assert [m["content"] for m in items] == ["for x/messages"]
    assert client.delete("/v1/sessions/x%2Fmessages").status_code == 204
    assert client.get("/v1/sessions/x%2Fmessages").status_code == 404
    assert [m["content"] for m in client.get("/v1/sessions/x/messages").json()["items"]] == [
        "for x"
    ]


def test_other_escapes_and_a_literal_percent(client: TestClient) -> None:
    sid = "50% off/ünïcode id"
    _append(client, quote(sid, safe=""), "hi")
    info = client.get(f"/v1/sessions/{quote(sid, safe='')}").json()
    assert info["session_id"] == sid
    listed = [s["session_id"] for s in client.get("/v1/sessions").json()["items"]]
    assert listed == [sid]
    window = client.get(f"/v1/sessions/{quote(sid, safe='')}/window").json()
    assert window["session_id"] == sid and window["in_window"] == [1]


def test_without_raw_path_a_literal_percent_is_not_decoded_twice() -> None:
    from chatkeep.server.paths import SessionIdConvertor, keep_encoded_slashes

    convert = SessionIdConvertor().convert
    for raw, path, expected in [
        (None, "/v1/sessions/a%41", "a%41"),  # a server that gives no raw_path
        (b"/v1/sessions/a%2541", "/v1/sessions/a%41", "a%41"),
        (b"/v1/sessions/x%2Fmessages", "/v1/sessions/x/messages", "x/messages"),
        (b"/v1/sessions/plain", "/v1/sessions/plain", "plain"),
    ]:
        scope: dict[str, object] = {"path": path, "raw_path": raw, "root_path": ""}
        keep_encoded_slashes(scope)
        assert convert(str(scope["path"])[len("/v1/sessions/") :]) == expected, raw


def test_a_real_uvicorn_process_keeps_encoded_slashes(tmp_path: Path) -> None:
    with serve(tmp_path) as (base, _):
        for path_id, text in (("x", "for x"), ("x%2Fmessages", "for x/messages")):
            r = httpx.post(
                f"{base}/v1/sessions/{path_id}/messages",
                json={"messages": [{"role": "user", "content": text}]},
                timeout=10,
            )
            assert r.status_code == 201, r.text
        info = httpx.get(f"{base}/v1/sessions/x%2Fmessages", timeout=10).json()
        plain = httpx.get(f"{base}/v1/sessions/x/messages", timeout=10).json()["items"]
    assert info["session_id"] == "x/messages" and info["message_count"] == 1
    assert [m["content"] for m in plain] == ["for x"]
