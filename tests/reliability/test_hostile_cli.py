"""Hostile input through the CLI: bad arguments and hostile export files are refused with a
clear error (exit status 2, the file's line named) and nothing is written, not even the
sessions of the file that came before the bad record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.reliability.snapshots import raw
from tests.reliability.test_isolation import cli

import chatkeep
from chatkeep import Message

HEADER = {"chatkeep_export": 1, "tenant": "default", "exported_at": "2024-01-01T00:00:00+00:00"}


def session(sid: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "session",
        "session_id": sid,
        "metadata": {},
        "expires_at": None,
        "summary": None,
        **extra,
    }


def message(sid: str, seq: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "message",
        "session_id": sid,
        "seq": seq,
        "role": "user",
        "content": "x",
    } | extra


GOOD = [session("first"), message("first", 1), message("first", 2)]
DEEP = '{"a": ' * 50_000 + "1" + "}" * 50_000

#: (what, records after the good session: dicts or raw bytes, the message's expected part)
BAD: list[tuple[str, list[Any], str]] = [
    ("JSON 50,000 deep", [session("s"), ("message-deep", DEEP)], "nested too deeply"),
    ("invalid UTF-8", [session("s"), b'{"type": "message", "content": "\xff"}'], "not UTF-8"),
    ("not JSON", [b"{nope"], "Expecting"),
    ("lone surrogate", [session("s"), message("s", 1, content="\ud800")], "surrogate"),
    ("NUL in the session id", [session("a\x00b")], "control character"),
    ("no session id", [{"type": "session"}], "without a session_id"),
    ("metadata not an object", [session("s", metadata=[1])], "metadata"),
    (
        "metadata too deep",
        [session("s", metadata=json.loads('{"a": ' * 150 + "1" + "}" * 150))],
        "nested",
    ),
    ("expiry not a time", [session("s", expires_at="garbage")], "ISO 8601"),
    ("expiry without zone", [session("s", expires_at="2030-01-01T00:00:00")], "timezone"),
    ("summary with NUL", [session("s", summary={"text": "a\x00", "covers_through_seq": 0})], "NUL"),
    ("summary not an object", [session("s", summary="text")], "summary"),
    (
        "summary past the messages",
        [session("s", summary={"text": "t", "covers_through_seq": 5}), message("s", 1)],
        "covers through seq 5",
    ),
    ("unknown role", [session("s"), message("s", 1, role="wizard")], "unknown role"),
    ("seq gap", [session("s"), message("s", 2)], "seq 2"),
    ("NaN", [session("s"), message("s", 1, metadata={"n": float("nan")})], "JSON"),
    ("unknown record", [{"type": "virus"}], "unknown record type"),
]


def _write(path: Path, records: list[Any]) -> None:
    with open(path, "wb") as f:
        for rec in [HEADER, *GOOD, *records]:
            if isinstance(rec, bytes):
                f.write(rec + b"\n")
            elif isinstance(rec, tuple):  # a message whose metadata is raw JSON text
                f.write(
                    b'{"type": "message", "session_id": "s", "seq": 1, "role": "user", '
                    b'"metadata": ' + rec[1].encode() + b"}\n"
                )
            else:
                f.write(json.dumps(rec).encode() + b"\n")


@pytest.mark.parametrize(("what", "records", "match"), BAD, ids=[b[0] for b in BAD])
def test_a_hostile_export_file_imports_nothing(
    tmp_path: Path, what: str, records: list[Any], match: str
) -> None:
    url = f"sqlite:///{tmp_path}/target.db"
    with chatkeep.open_store(url) as store:
        store.append("existing", Message.user("keep me"))
    before = raw(url)
    path = tmp_path / "bad.jsonl"
    _write(path, records)
    code, out = cli("import", str(path), "--store", url, "--on-conflict", "append")
    assert code == 2, out
    flat = out.replace("\n", "")
    assert match in flat and f"{path.name}:" in flat, out
    assert raw(url) == before  # not even "first", which came before the bad record


@pytest.mark.parametrize(
    "args",
    [
        ("sessions", "show", "a\nb"),
        ("sessions", "show", "x" * 257),
        ("sessions", "delete", "ok", "a\x00", "--yes"),
        ("sessions", "list", "--prefix", "a\x01"),
        ("sessions", "list", "--tenant", "t\x00"),
        ("export", "--tenant", "\ud800"),
        ("export", "a\x7f"),
    ],
)
def test_hostile_arguments_get_a_clear_error(tmp_path: Path, args: tuple[str, ...]) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    with chatkeep.open_store(url) as store:
        store.append("ok", Message.user("keep me"))
    before = raw(url)
    code, out = cli(*args, "--store", url)
    assert code == 2, out
    assert any(w in out for w in ("control character", "surrogate", "limit is")), out
    assert raw(url) == before
