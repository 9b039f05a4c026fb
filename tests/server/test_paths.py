"""Session ids with slashes in URLs: greedy matching, and ``%2F`` keeping an id whole."""

from __future__ import annotations

from urllib.parse import quote

from fastapi.testclient import TestClient


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
