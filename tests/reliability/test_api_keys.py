"""API keys: stored hashed, compared in constant time, keyless mode only on loopback.

No timing measurements (they would be flaky here): the constant-time claim is checked in the
code (every comparison of a secret goes through ``hmac.compare_digest``, none through ``==``),
and the lookup's semantics by unit tests. Keyless-on-loopback is checked on real ``chatkeep
serve`` processes.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.reliability.snapshots import app_client
from tests.server.helpers import free_port, serve

from chatkeep.errors import StoreUnavailable
from chatkeep.server import auth, keys
from chatkeep.server.keys import KeyFile, hash_key

SECRET_NAMES = ("key", "hash", "secret", "presented", "token")


def _secretish(node: ast.AST) -> str | None:
    name = node.id if isinstance(node, ast.Name) else getattr(node, "attr", None)
    if isinstance(node, ast.Call):
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
    if isinstance(name, str) and any(s in name.lower() for s in SECRET_NAMES):
        return name
    return None


def test_no_secret_is_compared_with_equality() -> None:
    """Every ``==``/``!=`` in the key modules: neither side may be a key, hash or secret."""
    offenders = []
    for module in (keys, auth):
        tree = ast.parse(inspect.getsource(module))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
            ):
                names = [_secretish(n) for n in (node.left, *node.comparators)]
                # the key *id* (public, in listings) and the file's format version may use ==
                hits = [n for n in names if n and n not in ("_key_id", "key_id")]
                if hits:
                    offenders.append(f"{module.__name__}:{node.lineno} {ast.unparse(node)}")
    assert offenders == []


def test_the_check_uses_compare_digest_whether_or_not_the_id_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str]] = []
    real = keys.hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(keys.hmac, "compare_digest", spy)
    kf = KeyFile(tmp_path / "k.json")
    key, record = kf.create("acme")
    assert kf.tenant_for(key) == "acme" and calls == [(hash_key(key), record.hash)]
    calls.clear()
    assert kf.tenant_for(f"ck_{record.id}_wrong-secret") is None and len(calls) == 1
    calls.clear()
    assert kf.tenant_for("ck_00000000_unknown-id") is None and len(calls) == 1  # same work
    calls.clear()
    assert kf.tenant_for("not-a-key-at-all") is None and len(calls) == 1


def test_lookup_semantics(tmp_path: Path) -> None:
    kf = KeyFile(tmp_path / "k.json")
    key_a, rec_a = kf.create("acme")
    key_b, _ = kf.create("globex")
    assert (kf.tenant_for(key_a), kf.tenant_for(key_b)) == ("acme", "globex")
    secret_b = key_b.split("_", 2)[2]
    wrong = [
        f"ck_{rec_a.id}_{secret_b}",  # A's id with B's secret
        key_a[:-1],
        key_a + "x",
        key_a.upper(),
        " " + key_a,
        key_a.replace("ck_", "CK_"),
        "",
        "ck_",
        "ck__",
        "ck_" + "0" * 8 + "_",
        "ck_" + rec_a.id,
        "x" * 100_000,
        "ck_ÿÿÿÿÿÿÿÿ_ÿ",
        rec_a.hash,  # the stored hash is not a key
    ]
    for candidate in wrong:
        assert kf.tenant_for(candidate) is None, candidate
    kf.revoke(rec_a.id)
    assert kf.tenant_for(key_a) is None and kf.tenant_for(key_b) == "globex"
    # a KeyFile opened afresh (another process) agrees
    fresh = KeyFile(tmp_path / "k.json")
    assert (fresh.tenant_for(key_a), fresh.tenant_for(key_b)) == (None, "globex")


def test_the_keys_file_holds_no_key(tmp_path: Path) -> None:
    kf = KeyFile(tmp_path / "k.json")
    made = [kf.create(t, label="prod")[0] for t in ("acme", "globex", "'; DROP TABLE x; --")]
    raw = (tmp_path / "k.json").read_bytes()
    for key in made:
        secret = key.split("_", 2)[2]
        assert key.encode() not in raw and secret.encode() not in raw
        assert secret[:16].encode() not in raw  # not even a part of it
        assert hashlib.sha256(key.encode()).hexdigest().encode() in raw
    assert oct(os.stat(tmp_path / "k.json").st_mode & 0o777) == "0o600"


def test_auth_header_forms(tmp_path: Path) -> None:
    kf = KeyFile(tmp_path / "keys.json")
    key, _ = kf.create("acme")
    with app_client(tmp_path) as client:
        ok = [
            {"Authorization": f"Bearer {key}"},
            {"Authorization": f"bearer {key}"},
            {"Authorization": f"Bearer   {key}  "},
            {"X-API-Key": key},
        ]
        for headers in ok:
            assert client.get("/v1/sessions", headers=headers).status_code == 200, headers
        bad = [
            {},
            {"Authorization": key},
            {"Authorization": f"Basic {key}"},
            {"Authorization": "Bearer "},
            {"Authorization": f"Bearer {key}x"},
            {"X-API-Key": key[:-1]},
            {"Authorization": b"Bearer " + b"\xff" * 10},  # type: ignore[dict-item]
        ]
        for headers in bad:
            r = client.get("/v1/sessions", headers=headers)
            assert r.status_code == 401, headers
            assert r.json()["error"]["code"] == "unauthorized"
            assert key not in r.text


def test_a_public_server_without_keys_file_refuses_instead_of_going_keyless(
    tmp_path: Path,
) -> None:
    """Regression: deleting or emptying the keys file under a server on 0.0.0.0 made it keyless
    (every caller became tenant ``default``)."""
    kf = KeyFile(tmp_path / "keys.json")
    key, _ = kf.create("acme")
    with app_client(tmp_path, host="0.0.0.0") as client:
        headers = {"Authorization": f"Bearer {key}"}
        assert (
            client.post(
                "/v1/sessions/s/messages",
                json={"messages": [{"role": "user", "content": "acme's"}]},
                headers=headers,
            ).status_code
            == 201
        )
        (tmp_path / "keys.json").unlink()
        for path in ("/v1/sessions", "/v1/server", "/v1/sessions/s/messages"):
            r = client.get(path)
            assert r.status_code == 401 and "not on loopback" in r.json()["error"]["message"]
        (tmp_path / "keys.json").write_text('{"version": 1, "keys": []}')
        assert client.get("/v1/sessions").status_code == 401
    with app_client(tmp_path) as client:  # the same on loopback: keyless is allowed there
        assert client.get("/v1/sessions").status_code == 200


def _serve_exit(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    return subprocess.run(
        [sys.executable, "-m", "chatkeep.cli", "serve", "--port", str(free_port()), *args],
        cwd=tmp_path,
        env={
            **os.environ,
            "CHATKEEP_URL": f"sqlite:///{tmp_path}/x.db",
            "CHATKEEP_KEYS_FILE": str(tmp_path / "keys.json"),
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_chatkeep_serve_refuses_public_interfaces_without_an_active_key(tmp_path: Path) -> None:
    for args, env in (
        (("--host", "0.0.0.0"), None),
        (("--host", "::"), None),
        ((), {"CHATKEEP_HOST": "0.0.0.0"}),
    ):
        out = _serve_exit(tmp_path, *args, env=env)
        assert out.returncode == 1, (args, out.stderr)
        assert "without API keys" in out.stderr and "Traceback" not in out.stderr
    # a keys file holding only revoked keys is no better
    kf = KeyFile(tmp_path / "keys.json")
    _, record = kf.create("acme")
    kf.revoke(record.id)
    out = _serve_exit(tmp_path, "--host", "0.0.0.0")
    assert out.returncode == 1 and "without API keys" in out.stderr


def test_a_real_public_server_needs_keys_and_revoking_the_last_opens_nothing(
    tmp_path: Path,
) -> None:
    kf = KeyFile(tmp_path / "keys.json")
    key, record = kf.create("acme")
    with serve(tmp_path, "--host", "0.0.0.0") as (base, _):  # requests go to 127.0.0.1 only
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{base}/v1/sessions", timeout=10).status_code == 401
        r = httpx.post(
            f"{base}/v1/sessions/s/messages",
            json={"messages": [{"role": "user", "content": "acme's"}]},
            headers=headers,
            timeout=10,
        )
        assert r.status_code == 201
        revoked = subprocess.run(
            [sys.executable, "-m", "chatkeep.cli", "keys", "revoke", record.id],
            env={**os.environ, "CHATKEEP_KEYS_FILE": str(tmp_path / "keys.json")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert revoked.returncode == 0, revoked.stderr
        for h in (headers, {}):  # the revoked key, and no key: both refused, no restart needed
            r = httpx.get(f"{base}/v1/sessions/s/messages", headers=h, timeout=10)
            assert r.status_code == 401, r.text
        (tmp_path / "keys.json").unlink()  # not even with the keys file gone
        assert httpx.get(f"{base}/v1/sessions/s/messages", timeout=10).status_code == 401
    logs = b"".join(p.read_bytes() for p in tmp_path.glob("serve-*.log"))
    assert key.encode() not in logs  # the key never reaches the server's log


@pytest.mark.parametrize(
    "content",
    [b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b'{"version": 1, "keys": [{"id": 1}]}', b"[]"],
)
def test_a_broken_keys_file_is_a_clear_error_not_a_crash(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "k.json").write_bytes(content)
    with pytest.raises(StoreUnavailable, match="cannot read the keys file"):
        KeyFile(tmp_path / "k.json").records()
