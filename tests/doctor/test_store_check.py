"""`chatkeep doctor --store URL`: real stores, opened without writing (CK201, CK202)."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import redis

import chatkeep
from chatkeep.doctor.stores import check_store
from doctor.test_cli_doctor import doctor
from redis_support import server_url


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns: nothing listens


def test_a_durable_sqlite_store_is_clean_and_untouched(tmp_path: Path) -> None:
    db = tmp_path / "chat.db"
    with chatkeep.open_store(f"sqlite:///{db}") as store:
        store.append("s", chatkeep.Message.user("hi"))
    before = db.read_bytes()
    out = doctor("--store", f"sqlite:///{db}", "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout)["diagnostics"] == []
    assert db.read_bytes() == before
    text = doctor("--store", f"sqlite:///{db}")
    assert "0 file(s) and 1 store(s) checked, no problems found" in text.stdout, text.stdout


def test_memory_store_is_not_durable() -> None:
    out = doctor("--store", "memory://")
    assert out.returncode == 1
    assert "memory://:1:1: CK201 store is not durable: memory://" in out.stdout
    assert "0 file(s) and 1 store(s) checked" in out.stdout.splitlines()[-1]


def test_missing_sqlite_file_is_reported_not_created(tmp_path: Path) -> None:
    db = tmp_path / "nope.db"
    found = check_store(f"sqlite:///{db}")
    assert found is not None and found.code == "CK202" and str(db) in found.message
    assert not db.exists()


def test_closed_port_is_unreachable_in_every_format() -> None:
    url = f"redis://127.0.0.1:{closed_port()}/0?connect_timeout=2"
    text = doctor("--store", url)
    assert text.returncode == 1 and "CK202 store unreachable" in text.stdout
    rows = json.loads(doctor("--store", url, "--format", "json").stdout)["diagnostics"]
    assert [(r["code"], r["name"], r["path"]) for r in rows] == [
        ("CK202", "store-unreachable", url)
    ]
    sarif = json.loads(doctor("--store", url, "--format", "sarif").stdout)
    assert [r["ruleId"] for r in sarif["runs"][0]["results"]] == ["CK202"]
    # --ignore applies to store findings too
    assert doctor("--store", url, "--ignore", "CK2").returncode == 0


def test_real_redis_is_reported_as_the_server_configures_it() -> None:
    url = server_url()
    r = redis.Redis.from_url(url)
    persistent = r.config_get("appendonly")["appendonly"] == "yes" or bool(
        r.config_get("save")["save"].strip()
    )
    out = doctor("--store", url, "--format", "json")
    codes = [d["code"] for d in json.loads(out.stdout)["diagnostics"]]
    assert codes == ([] if persistent else ["CK201"]), out.stdout
    assert out.returncode == (0 if persistent else 1)


def test_no_paths_and_no_store_is_a_usage_error() -> None:
    out = doctor()
    assert out.returncode == 2 and "--store" in out.stderr + out.stdout
