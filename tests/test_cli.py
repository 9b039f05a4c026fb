"""The chatkeep CLI, on real SQLite stores; one run through the installed console script."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import chatkeep
from chatkeep import Message
from chatkeep.cli import app

ROOT = Path(__file__).resolve().parent.parent
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
runner = CliRunner()


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def run_main(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chatkeep", path=str(Path(__import__("sys").executable).parent))
    assert exe, "the chatkeep console script is not installed"
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/cli.db"
    with chatkeep.open_store(url) as store:
        store.append(
            "user-1",
            [
                Message.system("be brief"),
                Message.user("weather?", metadata={"ip": "10.0.0.1"}),
                Message.assistant("", tool_calls=[CALL]),
                Message.tool('{"temp": 3}', tool_call_id="call_1"),
                Message.assistant(
                    "It is 3 degrees.",
                    format="langchain",
                    payload={"type": "ai", "data": {"id": "run-1"}},
                ),
            ],
        )
        store.append("user-2", Message.user("hello " * 300))
        store.update_session("user-1", metadata={"plan": "pro"})
        store.put_summary("user-1", "asked about weather", 2)
    return url


def test_version() -> None:
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.strip() == f"chatkeep {chatkeep.__version__}"


def test_list_and_show(url: str) -> None:
    result = cli("sessions", "list", "--store", url, "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["session_id"] for r in rows] == ["user-1", "user-2"]
    assert rows[0]["message_count"] == 5 and rows[0]["metadata"] == {"plan": "pro"}
    table = cli("sessions", "list", "--store", url, "--prefix", "user-2").stdout
    assert "user-2" in table and "user-1" not in table
    shown = cli("sessions", "show", "user-1", "--store", url).stdout
    assert "tool calls: f" in shown and "[call_1]" in shown and "asked about weather" in shown


def test_show_marks_the_window(url: str) -> None:
    result = cli("sessions", "show", "user-1", "--store", url, "--window", "40", "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    with chatkeep.open_store(url) as store:
        window = store.window("user-1", 40)
    assert {r["seq"] for r in rows if r["in_window"]} == {m.seq for m in window.all_messages}
    assert any(not r["in_window"] for r in rows)
    text = cli("sessions", "show", "user-1", "--store", url, "--window", "40").stdout
    assert re.search(r"window: \d+ messages, \d+/40 tokens", text)


def test_show_missing_session_exits_1(url: str) -> None:
    result = run_main("sessions", "show", "nobody", "--store", url)
    assert result.returncode == 1 and "no session 'nobody'" in result.stderr
    assert "Traceback" not in result.stderr


def test_delete(url: str) -> None:
    assert cli("sessions", "delete", "user-2", "--store", url, "--yes").exit_code == 0
    result = run_main("sessions", "delete", "user-1", "ghost", "--store", url, "--yes")
    assert result.returncode == 1 and "ghost" in result.stderr
    with chatkeep.open_store(url) as store:
        assert store.sessions().items == ()
    declined = runner.invoke(app, ["sessions", "delete", "x", "--store", url], input="n\n")
    assert declined.exit_code != 0


def test_export_import_round_trip_is_lossless(url: str, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    assert run_main("export", "--store", url, "--output", str(dump)).returncode == 0
    copy = f"sqlite:///{tmp_path}/copy.db"
    result = run_main("import", str(dump), "--store", copy)
    assert result.returncode == 0, result.stderr
    with chatkeep.open_store(url) as a, chatkeep.open_store(copy) as b:
        for sid in ("user-1", "user-2"):
            assert [m.to_dict() | {"id": None} for m in a.read(sid)] == [
                m.to_dict() | {"id": None} for m in b.read(sid)
            ]
            assert a.info(sid).metadata == b.info(sid).metadata  # type: ignore[union-attr]
            assert a.get_summary(sid) is None or (
                a.get_summary(sid).text == b.get_summary(sid).text  # type: ignore[union-attr]
            )
        m = b.read("user-1")
        assert m[2].tool_calls == [CALL] and m[3].tool_call_id == "call_1"
        assert m[4].payload == {"type": "ai", "data": {"id": "run-1"}}
        assert m[1].metadata == {"ip": "10.0.0.1"}
    # exporting the copy gives the same records (but for export time)
    dump2 = tmp_path / "dump2.jsonl"
    run_main("export", "--store", copy, "--output", str(dump2))
    strip = lambda p: [json.loads(x) for x in p.read_text().splitlines()[1:]]  # noqa: E731
    keep = ("role", "content", "tool_calls", "tool_call_id", "metadata", "created_at", "seq")
    assert [{k: r.get(k) for k in keep} for r in strip(dump) if r["type"] == "message"] == [
        {k: r.get(k) for k in keep} for r in strip(dump2) if r["type"] == "message"
    ]


def test_a_failed_export_leaves_no_partial_file_and_keeps_the_old_one(
    url: str, tmp_path: Path
) -> None:
    dump = tmp_path / "dump.jsonl"
    result = run_main("export", "user-1", "ghost", "--store", url, "--output", str(dump))
    assert result.returncode == 2 and "ghost" in result.stderr
    assert list(tmp_path.glob("*dump*")) == []  # not even a header line
    assert run_main("export", "--store", url, "--output", str(dump)).returncode == 0
    before = dump.read_bytes()
    assert run_main("export", "ghost", "--store", url, "--output", str(dump)).returncode == 2
    assert dump.read_bytes() == before  # the previous export is untouched
    assert sorted(p.name for p in tmp_path.glob("*dump*")) == ["dump.jsonl"]


def test_import_conflicts_and_reruns(url: str, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    cli("export", "--store", url, "--output", str(dump))
    assert run_main("import", str(dump), "--store", url).returncode == 2  # fail: exists
    assert cli("import", str(dump), "--store", url, "--on-conflict", "skip").exit_code == 0
    with chatkeep.open_store(url) as store:
        assert store.info("user-1").message_count == 5  # type: ignore[union-attr]
    # append twice: the second run replays idempotency keys, nothing is duplicated
    for _ in range(2):
        cli("import", str(dump), "--store", url, "--on-conflict", "append")
    with chatkeep.open_store(url) as store:
        assert store.info("user-1").message_count == 10  # type: ignore[union-attr]
    cli("import", str(dump), "--store", url, "--on-conflict", "replace")
    with chatkeep.open_store(url) as store:
        assert store.info("user-1").message_count == 5  # type: ignore[union-attr]


def test_import_with_a_bad_line_stores_nothing(url: str, tmp_path: Path) -> None:
    dump = tmp_path / "dump.jsonl"
    cli("export", "--store", url, "--output", str(dump))
    lines = dump.read_text().splitlines()
    lines[3] = lines[3].replace('"role": "user"', '"role": "wizard"')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    fresh = f"sqlite:///{tmp_path}/fresh.db"
    result = run_main("import", str(bad), "--store", fresh)
    assert result.returncode == 2 and f"{bad}:4" in result.stderr.replace("\n", "")
    with chatkeep.open_store(fresh) as store:
        assert store.sessions().items == ()


def _commands(group: Any, prefix: str) -> list[tuple[str, Any]]:
    out = []
    for name, cmd in group.commands.items():
        path = f"{prefix} {name}"
        if hasattr(cmd, "commands"):
            out += _commands(cmd, path)
        else:
            out.append((path, cmd))
    return out


STORELESS = {"chatkeep keygen"}  # every other command takes --store (the doctor: to check one)


def test_every_command_has_help_and_is_documented() -> None:
    root = typer.main.get_command(app)
    docs = (ROOT / "docs" / "cli.md").read_text()
    commands = _commands(root, "chatkeep")
    assert len(commands) >= 5
    for path, cmd in commands:
        assert cmd.help and len(cmd.help) > 20, path
        assert f"`{path}" in docs, f"{path} is not in docs/cli.md"
        result = cli(*path.split()[1:], "--help")
        assert result.exit_code == 0, path
        # every command takes --store, except the keys commands (they manage the keys file)
        assert (
            "--store" in result.stdout or path in STORELESS or path.startswith("chatkeep keys")
        ), path
