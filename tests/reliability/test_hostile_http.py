"""Hostile input against the HTTP API: each request is refused with a 4xx in the one error shape
and the store unchanged (raw SQLite dump, and every tenant's sessions), or stored verbatim.

The body-size limit is checked on a real ``chatkeep serve`` process over a raw socket: the
server answers 413 after at most about ``max_body_bytes``, without reading the rest."""

from __future__ import annotations

import json
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from tests.reliability.snapshots import app_client, raw
from tests.server.helpers import serve

from chatkeep.server.keys import KeyFile

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

MAX_BODY = 256 * 1024
USER = {"role": "user", "content": "hi"}


def error_of(r: Any, status: int | None = None) -> dict[str, Any]:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "request_id"}
    assert body["error"]["message"] and "Traceback" not in r.text
    return dict(body["error"])


class Api:
    """The in-process app with two tenants' keys, seeded, and a whole-store snapshot."""

    def __init__(self, client: TestClient, url: str, keys: dict[str, str]) -> None:
        self.client, self.url, self.keys = client, url, keys

    def auth(self, tenant: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[tenant]}"}

    def snapshot(self) -> Any:
        views = {}
        for tenant in self.keys:
            h = self.auth(tenant)
            listed = self.client.get("/v1/sessions", headers=h).json()["items"]
            views[tenant] = {
                s["session_id"]: self.client.get(
                    f"/v1/sessions/{quote(s['session_id'], safe='')}/messages", headers=h
                ).json()
                for s in listed
            }
        return views, raw(self.url)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    keys = KeyFile(tmp_path / "keys.json")
    tenants = {t: keys.create(t)[0] for t in ("acme", "'; DROP TABLE ck_sessions; --")}
    with app_client(tmp_path, max_body_bytes=MAX_BODY) as client:
        yield from _seeded(client, tmp_path, tenants)


def _seeded(client: TestClient, tmp_path: Path, tenants: dict[str, str]) -> Iterator[Api]:
    api = Api(client, f"sqlite:///{tmp_path}/server.db", tenants)
    for tenant in tenants:
        for sid in ("plain", "{tag}/*?", "../../etc/passwd"):
            r = client.post(
                f"/v1/sessions/{quote(sid, safe='')}/messages",
                json={"messages": [{"role": "user", "content": f"{tenant} {sid}"}]},
                headers=api.auth(tenant),
            )
            assert r.status_code == 201, r.text
    yield api


def _body(message: dict[str, Any] | str) -> bytes:
    if isinstance(message, str):
        return ('{"messages": [' + message + "]}").encode()
    return json.dumps({"messages": [message]}).encode()


DEEP = (
    '{"role": "user", "content": "x", "metadata": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}"
)
DEEP_ARRAY = (
    '{"role": "user", "content": "x", "metadata": {"a": ' + "[" * 10_000 + "]" * 10_000 + "}}"
)
TOO_DEEP = '{"role": "user", "content": "x", "metadata": ' + '{"a": ' * 150 + "1" + "}" * 150 + "}"
DEEP_TOOL = (
    '{"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": '
    '{"name": "f", "arguments": "{}"}, "x": ' + "[" * 10_000 + "]" * 10_000 + "}]}"
)

#: (what, method, path, body bytes or None, extra headers, expected status, expected code)
REFUSED: list[tuple[str, str, str, bytes | None, dict[str, str], int, str]] = [
    ("metadata 10,000 deep", "POST", "plain/messages", _body(DEEP), {}, 400, "invalid_json"),
    ("arrays 10,000 deep", "POST", "plain/messages", _body(DEEP_ARRAY), {}, 400, "invalid_json"),
    ("tool call 10,000 deep", "POST", "plain/messages", _body(DEEP_TOOL), {}, 400, "invalid_json"),
    ("metadata 150 deep", "POST", "plain/messages", _body(TOO_DEEP), {}, 400, "invalid_input"),
    (
        "invalid UTF-8 in the body",
        "POST",
        "plain/messages",
        b'{"messages": [{"role": "user", "content": "\xff\xfe\xc3("}]}',
        {},
        400,
        "invalid_json",
    ),
    (
        "lone surrogate in content",
        "POST",
        "plain/messages",
        _body('{"role": "user", "content": "a\\ud800"}'),
        {},
        400,
        "invalid_input",
    ),
    (
        "lone surrogate in a metadata key",
        "POST",
        "plain/messages",
        _body('{"role": "user", "content": "a", "metadata": {"\\udfff": 1}}'),
        {},
        400,
        "invalid_input",
    ),
    (
        "lone surrogate in the session id (body)",
        "POST",
        "/v1/chat",
        b'{"session_id": "a\\ud800", "message": "hi"}',
        {},
        400,
        "invalid_input",
    ),
    (
        "NaN",
        "POST",
        "plain/messages",
        _body('{"role": "user", "content": "a", "metadata": {"n": NaN}}'),
        {},
        400,
        "invalid_input",
    ),
    (
        "Infinity",
        "POST",
        "plain/messages",
        _body('{"role": "user", "content": "a", "metadata": {"n": -Infinity}}'),
        {},
        400,
        "invalid_input",
    ),
    (
        "1e400",
        "POST",
        "plain/messages",
        _body('{"role": "user", "content": "a", "metadata": {"n": 1e400}}'),
        {},
        400,
        "invalid_input",
    ),
    (
        "a 5000-digit number",
        "POST",
        "plain/messages",
        _body('{"role": "user", "content": "a", "metadata": {"n": ' + "9" * 5000 + "}}"),
        {},
        400,
        "invalid_json",
    ),
    ("unknown role", "POST", "plain/messages", _body({"role": "robot"}), {}, 400, "invalid_input"),
    (
        "tool message without tool_call_id",
        "POST",
        "plain/messages",
        _body({"role": "tool", "content": "42"}),
        {},
        400,
        "invalid_input",
    ),
    (
        "tool_calls on a user message",
        "POST",
        "plain/messages",
        _body({"role": "user", "content": "a", "tool_calls": [{"id": "c"}]}),
        {},
        400,
        "invalid_input",
    ),
    (
        "one bad message in a batch",
        "POST",
        "plain/messages",
        _body(json.dumps(USER) + ', {"role": "robot"}'),
        {},
        400,
        "invalid_input",
    ),
    (
        "unknown field",
        "POST",
        "plain/messages",
        _body({**USER, "x": 1}),
        {},
        422,
        "invalid_request",
    ),
    ("not JSON", "POST", "plain/messages", b"{not json", {}, 422, "invalid_request"),
    ("NUL in the path id", "POST", "a%00b/messages", _body(USER), {}, 400, "invalid_input"),
    ("newline in the path id", "POST", "a%0Ab/messages", _body(USER), {}, 400, "invalid_input"),
    ("%FF in the path id", "POST", "%FF/messages", _body(USER), {}, 400, "invalid_input"),
    (
        "encoded lone surrogate in the path id",
        "POST",
        "%ED%A0%80/messages",
        _body(USER),
        {},
        400,
        "invalid_input",
    ),
    ("257-char id", "POST", "x" * 257 + "/messages", _body(USER), {}, 400, "invalid_input"),
    (
        "Idempotency-Key over 256",
        "POST",
        "plain/messages",
        _body(USER),
        {"Idempotency-Key": "k" * 257},
        422,
        "invalid_request",
    ),
    (
        "Idempotency-Key with a control character",
        "POST",
        "plain/messages",
        _body(USER),
        {"Idempotency-Key": "a\tb"},
        400,
        "invalid_input",
    ),
    ("NUL in a prefix", "GET", "/v1/sessions?prefix=a%00", None, {}, 400, "invalid_input"),
    ("forged cursor", "GET", "/v1/sessions?cursor=AA", None, {}, 400, "invalid_input"),
    ("cursor not base64", "GET", "/v1/sessions?cursor=%25%25", None, {}, 400, "invalid_input"),
    (
        "NUL in summary text",
        "PUT",
        "plain/summary",
        b'{"text": "a\\u0000b", "covers_through_seq": 1}',
        {},
        400,
        "invalid_input",
    ),
    (
        "summary beyond the last message",
        "PUT",
        "plain/summary",
        b'{"text": "a", "covers_through_seq": 99}',
        {},
        400,
        "invalid_input",
    ),
    (
        "chat with an empty message",
        "POST",
        "/v1/chat",
        b'{"session_id": "plain", "message": ""}',
        {},
        422,
        "invalid_request",
    ),
    (
        "over max_body_bytes",
        "POST",
        "plain/messages",
        _body({**USER, "content": "z" * MAX_BODY}),
        {},
        413,
        "payload_too_large",
    ),
    (
        "Content-Length over the limit",
        "POST",
        "plain/messages",
        b"{}",
        {"Content-Length": str(10**12)},
        413,
        "payload_too_large",
    ),
    ("window budget 0", "GET", "plain/window?token_limit=0", None, {}, 422, "invalid_request"),
    ("limit over 1000", "GET", "plain/messages?limit=1001", None, {}, 422, "invalid_request"),
    ("negative after_seq", "GET", "plain/messages?after_seq=-1", None, {}, 422, "invalid_request"),
    (
        "after_seq over 64 bits",
        "GET",
        f"plain/messages?after_seq={2**70}",
        None,
        {},
        400,
        "invalid_input",
    ),
]


def test_hostile_requests_are_refused_and_change_nothing(api: Api) -> None:
    before = api.snapshot()
    headers = {**api.auth("acme"), "content-type": "application/json"}
    codes = []
    for what, method, path, body, extra, status, code in REFUSED:
        url = path if path.startswith("/") else f"/v1/sessions/{path}"
        r = api.client.request(method, url, content=body, headers={**headers, **extra})
        try:
            err = error_of(r, status)
            assert err["code"] == code, err
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from exc
        codes.append(err["code"])
        assert api.snapshot() == before, what
    assert len(codes) == len(REFUSED)


def test_odd_but_valid_input_is_stored_verbatim_over_http(api: Api) -> None:
    before = api.snapshot()
    h = api.auth("acme")
    # (literal "%2F" in ids: checked on the real server below; TestClient decodes paths twice)
    sid = "'; DROP TABLE ck_messages; --/{tag}*?[x]/../🦜"
    messages = [
        {"role": "system", "content": "NUL \u0000 CRLF \r\n US \u001f"},
        {"role": "user", "content": "𝄞 \ufeff \uffff \U0010ffff", "name": "n\u0000{x}"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c\u0000", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "content": "r", "tool_call_id": "c\u0000"},
        {"role": "tool", "content": "orphan", "tool_call_id": "nobody-called-me"},
        {
            "role": "user",
            "content": "numbers",
            "metadata": {"big": 10**300, "tiny": 5e-324, "k\u0000": {"$where": None}},
        },
    ]
    path = f"/v1/sessions/{quote(sid, safe='')}/messages"
    r = api.client.post(path, json={"messages": messages}, headers=h)
    assert r.status_code == 201, r.text
    items = api.client.get(path, headers=h).json()["items"]
    fields = ("role", "content", "name", "tool_calls", "tool_call_id", "metadata")
    got = [{k: m[k] for k in fields if k in m} for m in items]
    assert got == messages
    assert {m["session_id"] for m in items} == {sid}
    views, _ = api.snapshot()
    del views["acme"][sid]
    assert views == before[0]  # nothing else changed


# -- a real server process: the body limit holds before the body is read --------------------


def _send_until_answered(port: int, head: bytes, chunk: bytes, cap: int) -> tuple[bytes, int]:
    """Send ``head`` then ``chunk`` repeatedly until the server answers (or ``cap`` bytes went
    out). Returns (the server's first bytes, bytes of body sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        sent = 0
        s.settimeout(0.05)
        deadline = time.monotonic() + 30
        while sent < cap and time.monotonic() < deadline:
            try:
                answer = s.recv(4096)
                if answer:
                    return answer, sent
            except TimeoutError:
                pass
            try:
                s.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        s.settimeout(10)
        return s.recv(4096), sent


def test_a_real_server_refuses_oversized_bodies_without_reading_them(tmp_path: Path) -> None:
    limit = 100_000
    with serve(tmp_path, "--max-body-bytes", str(limit)) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        path = f"/v1/sessions/big-{secrets.token_hex(4)}/messages"
        # a declared length over the limit: answered at once, no body sent at all
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {10**12}\r\n\r\n"
        ).encode()
        answer, sent = _send_until_answered(port, head, b"", 0)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        # chunked, no length: the server stops after about the limit (64 MB offered)
        chunk_body = b'{"messages": [{"role": "user", "content": "' + b"z" * 65_536
        chunk = f"{len(chunk_body):x}\r\n".encode() + chunk_body + b"\r\n"
        head = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n"
        ).encode()
        answer, sent = _send_until_answered(port, head, chunk, 64 * 2**20)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"payload_too_large" in answer or b"content-length" in answer.lower()
        # socket buffers take a few MB before the server's answer is seen, never the 64 MB
        assert sent < 16 * 2**20, sent
        print(f"\nchunked upload over a {limit}-byte limit: 413 after {sent} bytes sent")
        assert httpx.get(f"{base}/v1/sessions", timeout=10).json()["items"] == []
        # ids with literal percent escapes are kept verbatim; escapes that are not UTF-8 are
        # refused rather than stored as U+FFFD
        ids = ["a/%2F/b", "%2F", "50%", "%25", "%FF", "../../etc/passwd"]
        for sid in ids:
            r = httpx.post(
                f"{base}/v1/sessions/{quote(sid, safe='')}/messages",
                json={"messages": [USER]},
                timeout=10,
            )
            assert (r.status_code, r.json()["session_id"]) == (201, sid), r.text
        for raw_id in ("%FF", "%ED%A0%80", "a%0Ab", "a%00b"):
            r = httpx.post(
                f"{base}/v1/sessions/{raw_id}/messages", json={"messages": [USER]}, timeout=10
            )
            assert error_of(r, 400)["code"] == "invalid_input", raw_id
        listed = httpx.get(f"{base}/v1/sessions", timeout=10).json()["items"]
        assert sorted(s["session_id"] for s in listed) == sorted(ids)
