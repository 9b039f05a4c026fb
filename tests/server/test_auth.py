"""API keys, tenants and the keyless-loopback rule."""

from __future__ import annotations

import json
import secrets
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from chatkeep.cli import app as cli_app
from chatkeep.server.auth import NoKeysOnPublicInterface
from chatkeep.server.keys import KeyFile, hash_key
from chatkeep.server.settings import Settings, is_loopback

runner = CliRunner()


def keys_cli(keys_file: Path, *args: str) -> Any:
    return runner.invoke(cli_app, ["keys", *args, "--keys-file", str(keys_file)])


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    created = keys_cli(path, "create", "acme", "--label", "prod")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("ck_") and len(key) > 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_text()
    assert key not in raw and hash_key(key) in raw  # only the hash is kept
    listed = [json.loads(x) for x in keys_cli(path, "list", "--json").stdout.splitlines()]
    assert [(r["tenant"], r["label"], r["revoked_at"]) for r in listed] == [("acme", "prod", None)]
    assert "hash" not in listed[0]
    assert KeyFile(path).tenant_for(key) == "acme"
    assert keys_cli(path, "revoke", listed[0]["id"]).exit_code == 0
    assert KeyFile(path).tenant_for(key) is None
    assert keys_cli(path, "revoke", "nope").exit_code != 0


def test_key_checks(tmp_path: Path) -> None:
    keys = KeyFile(tmp_path / "k.json")
    key, record = keys.create("t1")
    assert keys.tenant_for(key) == "t1"
    assert keys.tenant_for(key[:-1] + ("A" if key[-1] != "A" else "B")) is None
    assert keys.tenant_for(f"ck_{record.id}_wrong") is None
    assert keys.tenant_for("garbage") is None and keys.tenant_for("") is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.com", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_public_interface_without_keys_refuses_to_start(tmp_path: Path) -> None:
    settings = Settings(
        store_url=f"sqlite:///{tmp_path}/x.db", host="0.0.0.0", keys_file=str(tmp_path / "k.json")
    )
    from chatkeep.server import create_app

    with pytest.raises(NoKeysOnPublicInterface, match="without API keys"):
        with TestClient(create_app(settings)):
            pass
    out = subprocess.run(
        [sys.executable, "-m", "chatkeep.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "CHATKEEP_KEYS_FILE": str(tmp_path / "k.json")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1 and "refusing to listen on 0.0.0.0 without API keys" in out.stderr
    assert "Traceback" not in out.stderr
    KeyFile(tmp_path / "k.json").create("acme")
    with TestClient(create_app(settings)) as client:  # with a key it starts
        assert client.get("/v1/sessions").status_code == 401


def test_keys_required_once_any_exists(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client()
    assert client.get("/v1/sessions").status_code == 200  # keyless on loopback: tenant default
    keys = KeyFile(tmp_path / "keys.json")
    key, record = keys.create("acme")
    r = client.get("/v1/sessions")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    assert r.headers["www-authenticate"] == "Bearer"
    ok = client.get("/v1/sessions", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200
    assert client.get("/v1/server", headers={"X-API-Key": key}).json()["tenant"] == "acme"
    keys.revoke(record.id)  # takes effect on the next request, no restart
    assert client.get("/v1/sessions", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert client.get("/v1/sessions").status_code == 401  # revoking the last key opens nothing


def test_tenant_isolation_on_every_endpoint(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    keys = KeyFile(tmp_path / "keys.json")
    key_a, _ = keys.create("tenant-a")
    key_b, _ = keys.create("tenant-b")
    client = make_client()
    a = {"Authorization": f"Bearer {key_a}"}
    b = {"Authorization": f"Bearer {key_b}"}
    for sid in (
        f"user-{secrets.token_hex(8)}",
        f"org:{secrets.token_hex(4)}/thread:{secrets.randbelow(10**6)}",
        f"ünïcode-{secrets.token_urlsafe(6)}",
    ):
        _isolated(client, a, b, sid)
        client.delete(f"/v1/sessions/{sid}", headers=a)


def _isolated(client: TestClient, a: dict[str, str], b: dict[str, str], sid: str) -> None:
    msgs = {"messages": [{"role": "user", "content": "secret of A"}]}
    assert client.post(f"/v1/sessions/{sid}/messages", json=msgs, headers=a).status_code == 201
    client.put(
        f"/v1/sessions/{sid}/summary", json={"text": "A's", "covers_through_seq": 1}, headers=a
    )
    client.post("/v1/chat", json={"session_id": sid, "message": "my name is Ada"}, headers=a)

    # B cannot see, list, read, window, summarize, chat into or delete A's session: 404s only
    assert client.get("/v1/sessions", headers=b).json()["items"] == []
    assert client.get("/v1/sessions", params={"prefix": "user-"}, headers=b).json()["items"] == []
    for path in ("", "/messages", "/window", "/summary"):
        r = client.get(f"/v1/sessions/{sid}{path}", headers=b)
        assert r.status_code == 404, path
        assert "secret" not in r.text
    r = client.put(
        f"/v1/sessions/{sid}/summary", json={"text": "x", "covers_through_seq": 0}, headers=b
    )
    assert r.status_code == 404
    assert client.delete(f"/v1/sessions/{sid}", headers=b).status_code == 404
    # B writing to the same id creates B's own session, leaving A's untouched
    chat = client.post(
        "/v1/chat", json={"session_id": sid, "message": "what is my name?"}, headers=b
    )
    assert chat.status_code == 200 and "Ada" not in chat.json()["reply"]
    assert chat.json()["user"]["seq"] == 1
    r = client.post(f"/v1/sessions/{sid}/messages", json=msgs, headers=b)
    assert r.json()["first_seq"] == 3
    assert client.delete(f"/v1/sessions/{sid}", headers=b).status_code == 204

    a_items = client.get(f"/v1/sessions/{sid}/messages", headers=a).json()["items"]
    assert [m["content"] for m in a_items][:1] == ["secret of A"] and len(a_items) == 3
    assert client.get(f"/v1/sessions/{sid}/summary", headers=a).json()["text"] == "A's"
    listed = client.get("/v1/sessions", headers=a).json()["items"]
    assert [s["session_id"] for s in listed] == [sid]
    # keyless access is gone for everybody once keys exist
    assert client.get(f"/v1/sessions/{sid}").status_code == 401
