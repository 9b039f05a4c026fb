"""Tenant isolation across EVERY HTTP endpoint and every CLI command that takes a tenant or a
session, with random tenant names and session ids (unicode, ``/``, metacharacters).

The endpoints are enumerated from the app's routes (OpenAPI operations and hidden routes
alike) and the commands from the CLI's command tree: a new endpoint or command that this file
does not cover makes the test fail, so none is added without an isolation check.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import typer
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route
from tests.reliability.snapshots import app_client
from typer.testing import CliRunner

import chatkeep
from chatkeep import Message
from chatkeep.cli import _Exit
from chatkeep.cli import app as cli_app
from chatkeep.crypto import generate_key
from chatkeep.errors import ChatkeepError, EncryptionKeyError, InvalidInput
from chatkeep.server.keys import KeyFile

ALPHABET = "aZ09-_:/.é漢🦜'\";{}*?[]<>&|$` =+,"


def random_name(prefix: str, n: int = 10) -> str:
    """Random text from an alphabet of unicode, ``/`` and metacharacters ("%" is left out: the
    in-process TestClient decodes paths twice; real servers are checked in test_paths.py)."""
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(n)) + secrets.token_hex(3)


class Tenant:
    def __init__(self, name: str, key: str) -> None:
        self.name, self.key = name, key
        self.secret = f"SECRET-{secrets.token_hex(8)}"
        self.headers = {"Authorization": f"Bearer {key}"}


def path_of(sid: str) -> str:
    return "/v1/sessions/" + quote(sid, safe="")


# -- HTTP ------------------------------------------------------------------------------------

#: what each endpoint is for B while A owns session ``sid`` (B has nothing there yet):
#: "missing" = 404 for B; "own" = B's own new data; "none" = no tenant data at all
PROBES: dict[str, str] = {
    "GET /v1/sessions": "list",
    "GET /v1/sessions/{session_id}": "missing",
    "DELETE /v1/sessions/{session_id}": "missing",
    "GET /v1/sessions/{session_id}/messages": "missing",
    "POST /v1/sessions/{session_id}/messages": "own",
    "GET /v1/sessions/{session_id}/window": "missing",
    "GET /v1/sessions/{session_id}/summary": "missing",
    "PUT /v1/sessions/{session_id}/summary": "missing",
    "POST /v1/chat": "own",
    "GET /v1/server": "none",
    "GET /healthz": "none",
    "GET /readyz": "none",
    "GET /metrics": "none",
    "GET /": "none",
    "GET /openapi.json": "none",
    "GET /docs": "none",
    "GET /docs/oauth2-redirect": "none",
    "GET /redoc": "none",
    "MOUNT /static": "none",
}


def app_endpoints(app: Any) -> set[str]:
    """Every (method, path) the app serves: the OpenAPI operations, plus every route and mount
    found by walking the router (hidden routes, included routers)."""
    found = {f"{m.upper()} {p}" for p, ops in app.openapi()["paths"].items() for m in ops}

    def walk(routes: Any) -> None:
        for route in routes:
            if isinstance(route, Mount):
                found.add(f"MOUNT {route.path}")
            elif isinstance(route, APIRoute | Route):
                path = route.path.replace(":sid}", "}")
                found.update(f"{m} {path}" for m in route.methods or () if m != "HEAD")
            inner = getattr(route, "original_router", None) or getattr(route, "router", None)
            if inner is not None:
                walk(inner.routes)

    walk(app.routes)
    return found


def _request(client: Any, op: str, t: Tenant, sid: str) -> Any:
    method, template = op.split(" ", 1)
    if method == "MOUNT":
        return client.get(f"{template}/app.js", headers=t.headers)
    url = template.replace("{session_id}", quote(sid, safe=""))
    body: Any = None
    if op == "POST /v1/chat":
        body = {"session_id": sid, "message": f"{t.secret} what did the other tenant say?"}
    elif method == "POST":
        body = {"messages": [{"role": "user", "content": f"{t.secret} own message"}]}
    elif method == "PUT":
        body = {"text": f"{t.secret} own summary", "covers_through_seq": 0}
    return client.request(method, url, json=body, headers=t.headers)


def _tenant_view(client: Any, t: Tenant) -> dict[str, Any]:
    """Everything one tenant can see through the API."""
    out = {}
    for s in client.get("/v1/sessions", headers=t.headers).json()["items"]:
        sid = s["session_id"]
        out[sid] = {
            "info": s,
            "messages": client.get(path_of(sid) + "/messages", headers=t.headers).json(),
            "summary": client.get(path_of(sid) + "/summary", headers=t.headers).json(),
        }
    return out


@pytest.fixture
def tenants(tmp_path: Path) -> list[Tenant]:
    keys = KeyFile(tmp_path / "keys.json")
    names = [random_name("tënant/"), random_name("'; DROP TABLE "), random_name("{t}*?")]
    return [Tenant(name, keys.create(name)[0]) for name in names]


def test_every_endpoint_is_covered(tmp_path: Path) -> None:
    with app_client(tmp_path) as client:
        served = app_endpoints(client.app)
    assert served - set(PROBES) == set(), "new endpoints need an isolation probe in PROBES"
    assert set(PROBES) - served == set(), "PROBES names endpoints the app no longer serves"


def test_no_endpoint_crosses_tenants(tmp_path: Path, tenants: list[Tenant]) -> None:
    a, b, c = tenants
    sid = random_name("ü/")
    other = random_name("thread/")
    with app_client(tmp_path) as client:
        for t in (a, c):  # A and C own sessions under the same ids
            for s in (sid, other):
                r = client.post(
                    path_of(s) + "/messages",
                    json={
                        "messages": [
                            {"role": "user", "content": f"{t.secret} in {s}"},
                            {"role": "assistant", "content": "noted", "metadata": {"m": t.secret}},
                        ]
                    },
                    headers=t.headers,
                )
                assert r.status_code == 201, r.text
                r = client.put(
                    path_of(s) + "/summary",
                    json={"text": f"{t.secret} summary", "covers_through_seq": 1},
                    headers=t.headers,
                )
                assert r.status_code == 200, r.text
        views = {t.name: _tenant_view(client, t) for t in (a, c)}
        assert all(len(v) == 2 for v in views.values())
        served = app_endpoints(client.app)
        phases = [
            sorted(op for op in served if PROBES[op] != "own"),  # B owns nothing at sid yet
            sorted(op for op in served if PROBES[op] == "own"),  # B writes to the same id
            # and everything again, with B's own session there (deleting it last)
            sorted(served, key=lambda op: (op.startswith("DELETE"), op)),
        ]
        probed = set()
        for phase, ops in enumerate(phases):
            if phase == 2:  # B's own session holds only B's writes
                mine = _tenant_view(client, b)
                assert list(mine) == [sid]
                firsts = [m["content"].split()[0] for m in mine[sid]["messages"]["items"]]
                assert sorted(firsts) == sorted([b.secret, b.secret, "[offline"]), firsts
            for op in ops:
                r = _request(client, op, b, sid)
                probed.add(op)
                for t in (a, c):
                    assert t.secret not in r.text, (op, r.status_code)
                kind = PROBES[op]
                if kind == "missing" and phase == 0:
                    assert r.status_code == 404, (op, r.text)
                    assert r.json()["error"]["code"] == "not_found"
                elif kind == "own":
                    assert r.status_code in (200, 201), (op, r.text)
                elif kind == "list":
                    ids = [s["session_id"] for s in r.json()["items"]]
                    assert ids == ([] if phase == 0 else [sid]), ids
                    for prefix in (sid[:3], other[:4], ""):
                        q = client.get("/v1/sessions", params={"prefix": prefix}, headers=b.headers)
                        assert other not in q.text
                elif kind == "none":
                    assert r.status_code == 200, (op, r.text[:200])
                    assert sid not in r.text and quote(sid, safe="") not in r.text, op
        assert probed == served
        assert _tenant_view(client, b) == {}  # B deleted its own session (last probe)
        assert {t.name: _tenant_view(client, t) for t in (a, c)} == views
        assert client.get("/v1/server", headers=b.headers).json()["tenant"] == b.name


# -- CLI -------------------------------------------------------------------------------------

#: every command that takes a tenant or a session, and the test below that covers it
CLI_COVERED = {
    "sessions list": "list",
    "sessions show": "show",
    "sessions delete": "delete",
    "export": "export",
    "import": "import",
    "rekey": "rekey",
    "keys create": "http",  # a key's tenant: test_no_endpoint_crosses_tenants above
}
SCOPED_PARAMS = {"tenant", "session_id", "session_ids"}


def cli_commands() -> Iterator[tuple[str, Any]]:
    """(full name, command) for every leaf command of ``chatkeep``."""

    def walk(cmd: Any, prefix: str) -> Iterator[tuple[str, Any]]:
        subs = getattr(cmd, "commands", None)
        if isinstance(subs, dict):  # a group (typer ships its own click)
            for name, sub in subs.items():
                yield from walk(sub, f"{prefix} {name}".strip())
        else:
            yield prefix, cmd

    yield from walk(typer.main.get_command(cli_app), "")


def test_every_scoped_cli_command_is_covered() -> None:
    scoped = {
        name
        for name, cmd in cli_commands()
        if SCOPED_PARAMS & {p.name for p in cmd.params if p.name}
    }
    assert scoped == set(CLI_COVERED), scoped ^ set(CLI_COVERED)


runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    """Run a command as ``chatkeep`` would: (exit status, stdout + stderr)."""
    result = runner.invoke(cli_app, list(args))
    exc = result.exception
    code = result.exit_code
    if isinstance(exc, _Exit):
        code = exc.code
    elif isinstance(exc, InvalidInput):
        code = 2
    elif isinstance(exc, ChatkeepError):
        code = 1
    elif exc is not None and not isinstance(exc, SystemExit):
        raise exc
    return code, result.output + (str(exc) if exc else "")


@pytest.fixture
def cli_store(tmp_path: Path, tenants: list[Tenant]) -> Iterator[tuple[str, dict[str, Any]]]:
    url = f"sqlite:///{tmp_path}/cli.db"
    with chatkeep.open_store(url) as store:
        for t in tenants[::2]:
            view = store.with_tenant(t.name)
            for sid in ("shared", random_name("ü/")):
                view.append(sid, [Message.user(f"{t.secret} {sid}"), Message.assistant("ok")])
                view.put_summary(sid, f"{t.secret} summary", 1)
        yield url, _store_view(store, tenants)


def _store_view(store: Any, tenants: list[Tenant]) -> dict[str, Any]:
    out = {}
    for t in tenants:
        view = store.with_tenant(t.name)
        out[t.name] = {
            s.session_id: (
                [m.to_dict() for m in view.read(s.session_id)],
                view.get_summary(s.session_id),
            )
            for s in view.iter_sessions()
        }
    return out


def test_cli_commands_never_cross_tenants(
    cli_store: tuple[str, dict[str, Any]],
    tenants: list[Tenant],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, before = cli_store
    a, b, _ = tenants
    a_ids = list(before[a.name])
    as_b = ("--store", url, "--tenant", b.name)
    done = set()

    code, out = cli("sessions", "list", *as_b, "--json")
    assert code == 0 and out.strip() in ("", "no sessions"), out
    done.add("list")
    for sid in a_ids:
        code, out = cli("sessions", "show", sid, *as_b)
        assert code == 1 and "no session" in out and a.secret not in out
        code, out = cli("sessions", "show", sid, *as_b, "--window", "100", "--json")
        assert code == 1 and a.secret not in out
    done.add("show")
    code, out = cli("sessions", "delete", *a_ids, *as_b, "--yes")
    assert code == 1 and a.secret not in out
    done.add("delete")
    dump = tmp_path / "b.jsonl"
    code, out = cli("export", *as_b, "--output", str(dump))
    lines = dump.read_text(encoding="utf-8").splitlines()
    assert code == 0 and len(lines) == 1 and json.loads(lines[0])["tenant"] == b.name
    code, out = cli("export", a_ids[0], *as_b, "--output", str(dump))
    assert code == 2 and "no session" in out and a.secret not in dump.read_text(encoding="utf-8")
    done.add("export")
    # A's export imported as B lands in B only; A's and C's sessions do not change
    a_dump = tmp_path / "a.jsonl"
    assert cli("export", "--store", url, "--tenant", a.name, "--output", str(a_dump))[0] == 0
    code, out = cli("import", str(a_dump), *as_b)
    assert code == 0, out
    done.add("import")
    # rekey as B encrypts B's copies only: A's and C's sessions stay as they were (plaintext)
    key = generate_key()
    monkeypatch.setenv("CHATKEEP_ENCRYPTION_KEY", key)
    code, out = cli("rekey", *as_b)
    monkeypatch.delenv("CHATKEEP_ENCRYPTION_KEY")
    assert code == 0 and a.secret not in out, out
    with chatkeep.open_store(url, encryption=False) as keyless:
        others = [t for t in tenants if t.name != b.name]
        assert _store_view(keyless, others) == {t.name: before[t.name] for t in others}
        with pytest.raises(EncryptionKeyError):
            _store_view(keyless, [b])
    done.add("rekey")
    assert done == {v for v in CLI_COVERED.values() if v != "http"}
    with chatkeep.open_store(url, encryption=key) as store:
        after = _store_view(store, tenants)
    assert {k: v for k, v in after.items() if k != b.name} == {
        k: v for k, v in before.items() if k != b.name
    }
    assert sorted(after[b.name]) == sorted(before[a.name])  # B got a copy, under B
    # deleting as B now deletes B's copies only
    monkeypatch.setenv("CHATKEEP_ENCRYPTION_KEY", key)
    assert cli("sessions", "delete", *a_ids, *as_b, "--yes")[0] == 0
    monkeypatch.delenv("CHATKEEP_ENCRYPTION_KEY")
    with chatkeep.open_store(url) as store:
        after = _store_view(store, tenants)
    assert after == {**before, b.name: {}}


def test_the_console_script_keeps_tenants_apart(
    cli_store: tuple[str, dict[str, Any]], tenants: list[Tenant]
) -> None:
    """The same through the installed ``chatkeep`` script, in a separate process."""
    url, before = cli_store
    a, b, _ = tenants
    exe = shutil.which("chatkeep", path=str(Path(sys.executable).parent))
    assert exe
    sid = next(iter(before[a.name]))

    def show(tenant: Tenant) -> subprocess.CompletedProcess[str]:
        args = [exe, "sessions", "show", sid, "--store", url, "--tenant", tenant.name, "--json"]
        return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)

    out = show(b)
    assert out.returncode == 1 and "no session" in out.stderr and a.secret not in out.stdout
    out = show(a)
    assert out.returncode == 0 and a.secret in out.stdout
