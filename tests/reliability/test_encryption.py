"""Encryption at rest: nothing readable in raw storage, tampering and moved ciphertext are
detected, keys rotate, and a missing or wrong key is a clear error (never ciphertext as text,
never silent plaintext), across backends and processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import chatkeep
from chatkeep import EncryptionKeyError, Message, TamperedRecord
from chatkeep.crypto import Keyring, generate_key, parse_key
from chatkeep.rekey import rekey
from chatkeep.stores.base import NewRow
from chatkeep.stores.encrypted import SEALED, _sealed_message
from reliability.raw_scan import leaks, raw_bytes

DURABLE = ("sqlite", "file", "postgres", "redis", "redis-cluster")
KEY_A, KEY_B = generate_key(), generate_key()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=DURABLE)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def secrets(tag: str) -> dict[str, str]:
    names = ("content", "part", "name", "tool", "toolres", "msgmeta", "payload", "summary", "meta")
    return {k: f"{k}-secret-{tag}" for k in names}


def write_everything(store: Any, sid: str, s: dict[str, str]) -> None:
    """Every user-supplied text a session can hold, each with its own marker."""
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": s["tool"]}}
    store.append(
        sid,
        [
            Message.system("be brief"),
            Message.user(s["content"], name=s["name"], metadata={"note": s["msgmeta"]}),
            Message.user([{"type": "text", "text": s["part"]}]),
            Message.assistant(None, tool_calls=[call]),
            Message.tool(s["toolres"], tool_call_id="c1"),
            Message("assistant", "ok", format="langchain", payload={"data": {"x": s["payload"]}}),
        ],
    )
    store.put_summary(sid, s["summary"], 2)
    store.update_session(sid, metadata={"title": s["meta"]})


def test_raw_storage_holds_no_plaintext(backend: str, url: str) -> None:
    tag = uuid.uuid4().hex[:10]
    sid = f"sid-{tag}"
    s = secrets(tag)
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        write_everything(store, sid, s)
        expected = store.read(sid)
        if backend == "sqlite":  # the WAL before any checkpoint holds no plaintext either
            assert leaks(raw_bytes(backend, url, checkpointed=False), *s.values()) == []
        blob = raw_bytes(backend, url)
        assert leaks(blob, sid) == [sid], "the scan does not see the session"
        assert leaks(blob, *s.values()) == []
        assert b"ck2:" in blob
        # ... and it all reads back exactly, in this process and the window
        assert [m.content for m in expected][1:3] == [
            s["content"],
            [{"type": "text", "text": s["part"]}],
        ]
        assert expected[1].name == s["name"] and expected[1].metadata == {"note": s["msgmeta"]}
        assert expected[3].tool_calls[0]["function"]["arguments"] == s["tool"]
        assert expected[4].tool_call_id == "c1" and expected[4].role == "tool"
        assert expected[5].format == "langchain" and expected[5].payload == {
            "data": {"x": s["payload"]}
        }
        w = store.window(sid, 10_000)
        assert w.summary is not None and w.summary.text == s["summary"]
        assert store.info(sid).metadata == {"title": s["meta"]}  # type: ignore[union-attr]
    with chatkeep.open_store(url, encryption=False) as plain:  # the control: same writes
        write_everything(plain, f"plain-{tag}", s)
    assert set(leaks(raw_bytes(backend, url), *s.values())) == set(s.values())


# -- tampering and moved ciphertext ----------------------------------------------------------
def _stored_rows(store: Any, tenant: str, sid: str) -> list[Any]:
    return list(store._backend.inner.read(tenant, sid, after_seq=0, limit=None, newest=False))


def _put_raw(store: Any, tenant: str, sid: str, m: Any, *, content: str | None = None) -> None:
    """Write a stored (sealed) row as is into ``tenant``/``sid``, bypassing the sealing."""
    env = m.content if content is None else content
    body = f'{{"content":"{env}","format":"{SEALED}"}}'.encode()
    row = NewRow(_sealed_message(m.role, env, m.created_at), body, m.tokens)
    store._backend.inner.append(tenant, sid, [row], idempotency_key=None, expect_last_seq=None)


def vars_of(m: Any) -> dict[str, Any]:
    return {k: getattr(m, k) for k in ("role", "content", "created_at", "tokens")}


@pytest.fixture
def keyed(url: str) -> Iterator[Any]:
    with chatkeep.open_store(url, tenant="alice", encryption=KEY_A) as store:
        yield store


@pytest.mark.parametrize("backend", ["memory", *DURABLE])
def test_flipped_byte_moved_or_relabelled_ciphertext_is_refused(keyed: Any) -> None:
    keyed.append("s1", [Message.user("hello alice"), Message.assistant("hi")])
    user, assistant = _stored_rows(keyed, "alice", "s1")
    env = user.content
    flipped = env[:-5] + ("A" if env[-5] != "A" else "B") + env[-4:]
    _put_raw(keyed, "alice", "flip", user, content=flipped)
    _put_raw(keyed, "bob", "s1", user)  # another tenant, same session id
    _put_raw(keyed, "alice", "s2", user)  # another session of the same tenant
    relabelled = SimpleNamespace(**{**vars_of(assistant), "role": "user"})  # role changed
    _put_raw(keyed, "alice", "role", relabelled)
    for tenant, sid in (("alice", "flip"), ("bob", "s1"), ("alice", "s2"), ("alice", "role")):
        with pytest.raises(TamperedRecord, match="failed authentication"):
            keyed.with_tenant(tenant).read(sid)
        with pytest.raises(TamperedRecord):
            keyed.with_tenant(tenant).window(sid, 1000)
    assert [m.content for m in keyed.read("s1")] == ["hello alice", "hi"]  # the original


def test_missing_or_wrong_key_is_a_clear_error(backend: str, url: str) -> None:
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        store.append("s", Message.user("top secret"))
        store.put_summary("s", "summary", 1)
        store.update_session("m", metadata={"a": 1})
        kid = Keyring(KEY_A).current_id
    with chatkeep.open_store(url, encryption=False) as nokey:
        for call in (lambda: nokey.read("s"), lambda: nokey.window("s", 100)):
            with pytest.raises(
                EncryptionKeyError, match=f"encrypted \\(key id {kid}\\).*no encryption key"
            ):
                call()
        with pytest.raises(EncryptionKeyError):
            nokey.info("m")
        with pytest.raises(EncryptionKeyError):
            nokey.get_summary("s")
    with chatkeep.open_store(url, encryption=KEY_B) as wrong:
        with pytest.raises(
            EncryptionKeyError, match=f"key id {kid}, which this store was not given"
        ):
            wrong.read("s")


def test_a_keyless_store_refuses_text_that_would_read_back_as_an_envelope(url: str) -> None:
    with chatkeep.open_store(url, encryption=False) as store:
        store.append("s", Message.user("ck1:0011223344556677:looks sealed"))  # content: fine
        assert store.read("s")[0].content == "ck1:0011223344556677:looks sealed"
        with pytest.raises(chatkeep.InvalidInput, match="reserved"):
            store.put_summary("s", "ck1:0011223344556677:AAAA", 1)
        with pytest.raises(chatkeep.InvalidInput, match="reserved"):
            store.update_session("s", metadata={"ck1": "ck1:0011223344556677:AAAA"})
        assert store.get_summary("s") is None and store.info("s").metadata == {}  # type: ignore[union-attr]


# -- rotation and migration ------------------------------------------------------------------
def _key_ids(store: Any, sid: str) -> set[str]:
    rows = _stored_rows(store, store.tenant, sid)
    return {m.content.split(":")[1] if m.format == SEALED else "plain" for m in rows}


def test_rotation_old_data_readable_rekey_rewrites_old_key_removable(
    backend: str, url: str
) -> None:
    a, b = Keyring(KEY_A).current_id, Keyring(KEY_B).current_id
    with chatkeep.open_store(url, encryption=False) as plain:  # before encryption was on
        plain.append("legacy", [Message.user("old plain"), Message.assistant("reply")])
        plain.update_session("legacy", metadata={"t": "plain meta"})
    with chatkeep.open_store(url, encryption=KEY_A) as sa:
        sa.append("s", [Message.user(f"m{i}") for i in range(5)])
        sa.put_summary("s", "sum under A", 3)
        sa.update_session("s", metadata={"t": "meta under A"}, expires_at=None)
        sa.update_session("empty", metadata={"t": "only meta"})  # a session without messages
        assert sa.read("legacy")[0].content == "old plain"  # mixed data is readable
    both = Keyring(KEY_B, [KEY_A])
    with chatkeep.open_store(url, encryption=both) as sb:
        sb.append("s", Message.user("m5 under B"))
        assert _key_ids(sb, "s") == {a, b}
        assert [m.content for m in sb.read("s")][-2:] == ["m4", "m5 under B"]
        before = [(m.seq, m.id, m.created_at) for m in sb.read("s") + sb.read("legacy")]
        report = rekey(sb, ["default"])
        # in place: the 5 messages under A and the 2 plaintext ones; "m5 under B" stays as is
        assert (report.sessions, report.rewritten, report.messages) == (3, 3, 7)
        assert [(m.seq, m.id, m.created_at) for m in sb.read("s") + sb.read("legacy")] == before
        assert _key_ids(sb, "s") == {b} and _key_ids(sb, "legacy") == {b}
        assert rekey(sb, ["default"]).rewritten == 0  # idempotent: a second run has nothing to do
    with chatkeep.open_store(url, encryption=KEY_B) as only_b:  # key A removed
        s = only_b.read("s")
        assert [m.seq for m in s] == list(range(1, 7)) and s[-1].content == "m5 under B"
        assert only_b.get_summary("s").text == "sum under A"  # type: ignore[union-attr]
        assert only_b.info("s").metadata == {"t": "meta under A"}  # type: ignore[union-attr]
        assert only_b.info("legacy").metadata == {"t": "plain meta"}  # type: ignore[union-attr]
        assert only_b.info("empty").metadata == {"t": "only meta"}  # type: ignore[union-attr]
        assert only_b.read("legacy")[0].content == "old plain"
        assert only_b.window("s", 1000).summary.covers_through_seq == 3  # type: ignore[union-attr]
    assert leaks(raw_bytes(backend, url), "old plain", "plain meta", "sum under A") == []
    with chatkeep.open_store(url, encryption=KEY_A) as only_a, pytest.raises(EncryptionKeyError):
        only_a.read("s")
    with chatkeep.open_store(url, encryption=Keyring(None, [KEY_B])) as off:  # decrypt all
        assert rekey(off, ["default"]).rewritten == 3
    with chatkeep.open_store(url, encryption=False) as plain:
        assert plain.read("legacy")[0].content == "old plain"
        assert plain.info("s").metadata == {"t": "meta under A"}  # type: ignore[union-attr]


# -- other processes and the command line -----------------------------------------------------
READER = """
import sys, chatkeep
try:
    with chatkeep.open_store(sys.argv[1]) as s:
        print(s.read("s")[0].content)
except chatkeep.ChatkeepError as exc:
    print(type(exc).__name__, exc)
    sys.exit(3)
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATKEEP_ENCRYPTION")}
    return {**env, "PYTHONPATH": str(ROOT / "src"), **extra}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_second_process_reads_with_the_key_and_fails_clearly_without(url: str) -> None:
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        store.append("s", Message.user("across processes"))
    run = [sys.executable, "-c", READER, url]
    ok = subprocess.run(
        run, env=_env(CHATKEEP_ENCRYPTION_KEY=KEY_A), capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0 and ok.stdout.strip() == "across processes", ok.stderr
    bad = subprocess.run(run, env=_env(), capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3 and bad.stdout.startswith("EncryptionKeyError"), (
        bad.stdout + bad.stderr
    )
    assert "across processes" not in bad.stdout and "ck2:" not in bad.stdout


def test_rekey_command_migrates_and_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/cli.db"
    with chatkeep.open_store(url, encryption=False) as plain:
        for i in range(3):
            plain.append(f"s{i}", Message.user(f"legacy {i}"))
        plain.with_tenant("acme").append("x", Message.user("acme legacy"))
    cmd = [
        sys.executable,
        "-m",
        "chatkeep.cli",
        "rekey",
        "--store",
        url,
        "-t",
        "default",
        "-t",
        "acme",
    ]
    first = subprocess.run(
        cmd, env=_env(CHATKEEP_ENCRYPTION_KEY=KEY_A), capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    assert "4 session(s) looked at, 4 rewritten (4 message(s)), 0 skipped" in first.stderr
    again = subprocess.run(  # no tenants named: it finds both
        cmd[:6], env=_env(CHATKEEP_ENCRYPTION_KEY=KEY_A), capture_output=True, text=True, timeout=60
    )
    assert "4 session(s) looked at, 0 rewritten" in again.stderr
    assert leaks(raw_bytes("sqlite", url), "legacy 0", "acme legacy") == []
    nokey = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=60)
    assert nokey.returncode == 2 and "rekey needs an encryption key" in nokey.stderr


# -- keys, settings, server --------------------------------------------------------------------
def test_keys_are_never_shown() -> None:
    ring = Keyring(KEY_B, [KEY_A])
    assert KEY_A not in repr(ring) and KEY_B not in repr(ring)
    assert ring.key_ids[0] == ring.current_id and len(ring.key_ids) == 2
    with pytest.raises(EncryptionKeyError, match="32 bytes") as e1:
        parse_key("c2hvcnQ=")
    with pytest.raises(EncryptionKeyError, match="not valid base64") as e2:
        parse_key("not a key!")
    assert "c2hvcnQ" not in str(e1.value) and "not a key" not in str(e2.value)
    assert parse_key(KEY_A.replace("+", "-").replace("/", "_").rstrip("=")) == parse_key(KEY_A)


def test_server_setting_encrypts_and_never_shows_the_key(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from chatkeep.server import Settings, create_app

    url = f"sqlite:///{tmp_path}/server.db"
    settings = Settings(store_url=url, keys_file=str(tmp_path / "k.json"), encryption_key=KEY_A)
    assert KEY_A not in repr(settings)
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/v1/sessions/s/messages",
            json={"messages": [{"role": "user", "content": "server secret"}]},
        )
        assert r.status_code == 201, r.text
        assert (
            client.get("/v1/sessions/s/messages").json()["items"][0]["content"] == "server secret"
        )
    assert leaks(raw_bytes("sqlite", url), "server secret") == []
    env = Settings.from_env(
        {"CHATKEEP_ENCRYPTION_KEY": KEY_A, "CHATKEEP_ENCRYPTION_OLD_KEYS": KEY_B}
    )
    assert env.keyring().key_ids == (Keyring(KEY_A).current_id, Keyring(KEY_B).current_id)  # type: ignore[union-attr]
    with pytest.raises(EncryptionKeyError, match="encryption_key"):
        Settings(encryption_key="short")


def test_rekey_never_loses_a_concurrent_append(tmp_path: Path) -> None:
    """A writer keeps appending to a session while rekey rewrites it in place: rekey only
    rewrites the (seq, id) pairs it read, so every append survives, once, in order."""
    import threading

    url = f"sqlite:///{tmp_path}/hot.db?synchronous=normal"
    with chatkeep.open_store(url, encryption=KEY_A) as sa:
        for i in range(20):
            sa.append(f"cold{i}", [Message.user(f"c{j}") for j in range(10)])
        sa.append("hot", Message.user("start"))
    stop = threading.Event()
    written: list[int] = []
    with chatkeep.open_store(url, encryption=Keyring(KEY_B, [KEY_A])) as sb:

        def writer() -> None:
            i = 0
            while not stop.is_set() and i < 1000:
                sb.append("hot", Message.user(f"w{i}"))
                written.append(i)
                i += 1

        t = threading.Thread(target=writer)
        t.start()
        while len(written) < 20 and t.is_alive():  # the writer is going before rekey starts
            time.sleep(0.001)
        try:
            first = rekey(sb, ["default"])
        finally:
            stop.set()
            t.join(timeout=60)
        second = rekey(sb, ["default"])
        assert second.skipped == [] and first.rewritten + second.rewritten >= 21
        texts = [m.content for m in sb.read("hot")]
        assert texts == ["start"] + [f"w{i}" for i in written]  # all there, once, in order
        assert _key_ids(sb, "hot") == {Keyring(KEY_B).current_id}


def test_sync_and_async_wrappers_are_twins() -> None:
    from chatkeep.stores.base import PRIMITIVES
    from chatkeep.stores.encrypted import AsyncEncryptedBackend, EncryptedBackend

    for name in (*PRIMITIVES, "open", "close", "bind_tokenizer"):
        assert callable(getattr(EncryptedBackend, name)), name
        assert callable(getattr(AsyncEncryptedBackend, name)), name


def test_a_message_replaced_between_read_and_rewrite_is_retried_not_overwritten(
    tmp_path: Path,
) -> None:
    """Deterministic: another writer (its own store and connection) pops the last message and
    appends a new one right after rekey read the session, so seq 2 is now another message
    with another id. The rewrite names (seq, id), so it conflicts instead of putting the old
    message's envelope over the new one; the session is read again and finished."""
    url = f"sqlite:///{tmp_path}/race.db"
    with chatkeep.open_store(url, encryption=KEY_A) as sa:
        sa.append("s", [Message.user("one"), Message.assistant("two")])
    with (
        chatkeep.open_store(url, encryption=Keyring(KEY_B, [KEY_A])) as sb,
        chatkeep.open_store(url, encryption=Keyring(KEY_B, [KEY_A])) as other,
    ):
        inner = sb._backend.inner
        real_read, reads = inner.read, []

        def read_then_someone_replaces(*a: Any, **kw: Any) -> Any:
            rows = real_read(*a, **kw)
            reads.append(1)
            if len(reads) == 1:
                other.pop("s")
                other.append("s", Message.assistant("sneaked in"))
            return rows

        inner.read = read_then_someone_replaces
        try:
            report = rekey(sb, ["default"])
        finally:
            del inner.read
        assert len(reads) == 2 and report.skipped == [] and report.rewritten == 1
        assert [m.content for m in sb.read("s")] == ["one", "sneaked in"]
        assert _key_ids(sb, "s") == {Keyring(KEY_B).current_id}
