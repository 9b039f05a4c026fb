"""Encryption at rest, format 2: each envelope is bound to its message's own id, so ciphertext
swapped between two messages of one session is refused; format-1 data (no identity) still
reads and ``chatkeep rekey`` rewrites it in place, keeping ids, seqs, timestamps and
idempotency keys, for every tenant it finds, and survives being killed at any point."""

from __future__ import annotations

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest

import chatkeep
from chatkeep import Message, TamperedRecord
from chatkeep.crypto import Keyring, generate_key, parse_key
from chatkeep.rekey import rekey
from chatkeep.stores.base import UNSET, NewRow
from chatkeep.stores.encrypted import SEALED, _sealed_message
from chatkeep.validation import encode_body
from reliability.raw_scan import redis_keys, sqlite_path

DURABLE = ("sqlite", "file", "postgres", "redis", "redis-cluster")
KEY_A, KEY_B = generate_key(), generate_key()
A, B = Keyring(KEY_A).current_id, Keyring(KEY_B).current_id
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=DURABLE)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- raw storage: swap two messages' stored bodies, bypassing chatkeep ------------------------
def swap_bodies(backend: str, url: str, tenant: str, sid: str, seq1: int, seq2: int) -> None:
    """Exchange what messages ``seq1`` and ``seq2`` store as their body (the envelope), the
    way someone with write access to the database would; their seqs, ids, roles stay."""
    if backend == "sqlite":
        conn = sqlite3.connect(sqlite_path(url))
        try:
            pk = conn.execute(
                "SELECT pk FROM ck_sessions WHERE tenant = ? AND session_id = ?", (tenant, sid)
            ).fetchone()[0]
            get = "SELECT body FROM ck_messages WHERE session_pk = ? AND seq = ?"
            b1 = conn.execute(get, (pk, seq1)).fetchone()[0]
            b2 = conn.execute(get, (pk, seq2)).fetchone()[0]
            put = "UPDATE ck_messages SET body = ? WHERE session_pk = ? AND seq = ?"
            conn.execute(put, (b2, pk, seq1))
            conn.execute(put, (b1, pk, seq2))
            conn.commit()
        finally:
            conn.close()
    elif backend == "postgres":
        import psycopg
        from psycopg import sql

        base, _, query = url.partition("?")
        schema = sql.Identifier(dict(parse_qsl(query))["schema"])
        with psycopg.connect(base, autocommit=False) as conn:
            pk = conn.execute(
                sql.SQL(
                    "SELECT pk FROM {}.ck_sessions WHERE tenant = %s AND session_id = %s"
                ).format(schema),
                (tenant, sid),
            ).fetchone()[0]  # type: ignore[index]
            conn.execute(
                sql.SQL(
                    "UPDATE {s}.ck_messages m SET body = o.body FROM {s}.ck_messages o "
                    "WHERE m.session_pk = %(pk)s AND o.session_pk = %(pk)s AND "
                    "((m.seq = %(a)s AND o.seq = %(b)s) OR (m.seq = %(b)s AND o.seq = %(a)s))"
                ).format(s=schema),
                {"pk": pk, "a": seq1, "b": seq2},
            )
    elif backend in ("redis", "redis-cluster"):
        client, keys = redis_keys(url)
        try:
            key = next(k for k in keys if k.endswith(b":m") and f":{sid}}}".encode() in k)
            r1, r2 = client.hget(key, seq1), client.hget(key, seq2)
            head1, _, body1 = r1.rpartition(b"\x1f")
            head2, _, body2 = r2.rpartition(b"\x1f")
            client.hset(key, mapping={seq1: head1 + b"\x1f" + body2, seq2: head2 + b"\x1f" + body1})
        finally:
            client.close()
    elif backend == "file":
        root = Path(url.removeprefix("file://"))
        (path,) = [p for p in root.rglob("*.jsonl") if p.stem == sid]
        lines = path.read_text().splitlines()
        rows = {}
        for n, line in enumerate(lines):
            rec = json.loads(line)
            if rec["k"] in ("b", "r"):
                for i, row in enumerate(rec["m"]):
                    rows[row[0]] = (n, i)
        recs = [json.loads(line) for line in lines]
        (n1, i1), (n2, i2) = rows[seq1], rows[seq2]
        b1, b2 = recs[n1]["m"][i1][5], recs[n2]["m"][i2][5]
        recs[n1]["m"][i1][5], recs[n2]["m"][i2][5] = b2, b1
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs))
    else:
        raise AssertionError(backend)


def test_swapped_ciphertexts_are_refused(backend: str, url: str) -> None:
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        store.append("s", [Message.user("pay alice 10"), Message.user("pay mallory 9999")])
        store.append("s", Message.assistant("done"))
    swap_bodies(backend, url, "default", "s", 1, 2)  # same session, same role
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        with pytest.raises(TamperedRecord, match="failed authentication"):
            store.read("s")
        with pytest.raises(TamperedRecord, match="failed authentication"):
            store.window("s", 10_000)
        assert [m.content for m in store.read("s", after_seq=2)] == ["done"]  # others fine
    swap_bodies(backend, url, "default", "s", 1, 2)  # the control: put them back
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        assert [m.content for m in store.read("s")] == ["pay alice 10", "pay mallory 9999", "done"]


# -- format 1 (ck1: bound to tenant, session, role and key, not to the message) ---------------
def seal_v1(key: str, plaintext: bytes, tenant: str, sid: str, kind: str, role: str) -> str:
    """A format-1 envelope, made the way the first release made them (written out here from
    the documented format, so old data is old data whatever the current code does)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    raw = parse_key(key)
    kid = HKDF(hashes.SHA256(), 8, None, b"chatkeep key id v1").derive(raw).hex()
    data_key = HKDF(hashes.SHA256(), 32, b"chatkeep data key v1", tenant.encode()).derive(raw)
    nonce = os.urandom(12)
    aad = "\0".join(("chatkeep-v1", kid, kind, tenant, sid, role)).encode()
    blob = nonce + AESGCM(data_key).encrypt(nonce, plaintext, aad)
    return f"ck1:{kid}:{base64.urlsafe_b64encode(blob).decode().rstrip('=')}"


def write_v1(store: Any, tenant: str, sid: str, messages: list[Message], key: str) -> None:
    """Store ``messages`` (and a summary and metadata) as format-1 envelopes, as one batch."""
    rows = []
    for m in messages:
        env = seal_v1(key, encode_body(m), tenant, sid, "msg", m.role)
        body = f'{{"content":"{env}","format":"{SEALED}"}}'.encode()
        rows.append(NewRow(_sealed_message(m.role, env, m.created_at), body, 3))
    inner = store._backend.inner
    inner.append(tenant, sid, rows, idempotency_key="v1-batch", expect_last_seq=None)
    summary = seal_v1(key, b"an old summary", tenant, sid, "summary", "")
    inner.put_summary(tenant, sid, summary, 1, 4)
    meta = seal_v1(key, b'{"title":"old meta"}', tenant, sid, "meta", "")
    inner.update_session(tenant, sid, metadata={"ck1": meta}, expires_at=UNSET)


def envelopes(store: Any, tenant: str, sid: str) -> list[str]:
    rows = store._backend.inner.read(tenant, sid, after_seq=0, limit=None, newest=False)
    return [str(m.content)[:21] for m in rows]


@pytest.mark.parametrize("backend", ["memory", *DURABLE])
def test_format1_data_still_reads_and_rekey_moves_it_to_format2(backend: str, url: str) -> None:
    olds = [Message.user("old one"), Message.user("old two"), Message.assistant("old three")]
    with chatkeep.open_store(url, encryption=KEY_A, tenant="acme") as store:
        write_v1(store, "acme", "s", olds, KEY_A)
        assert {e[:4] for e in envelopes(store, "acme", "s")} == {"ck1:"}
        got = store.read("s")
        assert [m.content for m in got] == ["old one", "old two", "old three"]
        assert store.get_summary("s").text == "an old summary"  # type: ignore[union-attr]
        assert store.info("s").metadata == {"title": "old meta"}  # type: ignore[union-attr]
        assert store.window("s", 10_000).summary.text == "an old summary"  # type: ignore[union-attr]
        before = [(m.seq, m.id, m.created_at, m.tokens) for m in got]
        report = rekey(store)  # same key: only the format changes
        assert (report.rewritten, report.messages, report.skipped) == (1, 3, [])
        assert set(envelopes(store, "acme", "s")) == {f"ck2:{A}:"}
        after = store.read("s")
        assert [(m.seq, m.id, m.created_at, m.tokens) for m in after] == before
        assert [m.content for m in after] == ["old one", "old two", "old three"]
        assert store.get_summary("s").text == "an old summary"  # type: ignore[union-attr]
        assert store.info("s").metadata == {"title": "old meta"}  # type: ignore[union-attr]
        replay = store.append("s", olds, idempotency_key="v1-batch")  # the old key replays
        assert replay.replayed and [m.id for m in replay.messages] == [b[1] for b in before]
        assert [m.content for m in replay.messages] == ["old one", "old two", "old three"]
        assert len(store.read("s")) == 3
        assert rekey(store).rewritten == 0


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "redis", "file"])
def test_format1_swaps_pass_unnoticed_until_rekey_binds_the_ids(backend: str, url: str) -> None:
    """Why format 2 exists (and why rekey matters): two format-1 messages swapped in the
    database read back swapped without a sound; once rekeyed, the same swap is refused."""
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        write_v1(store, "default", "s", [Message.user("first"), Message.user("second")], KEY_A)
    swap_bodies(backend, url, "default", "s", 1, 2)
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        assert [m.content for m in store.read("s")] == ["second", "first"]  # undetected
        swap_bodies(backend, url, "default", "s", 1, 2)
        rekey(store)
    swap_bodies(backend, url, "default", "s", 1, 2)
    with chatkeep.open_store(url, encryption=KEY_A) as store:
        with pytest.raises(TamperedRecord):
            store.read("s")


# -- rekey keeps ids, seqs, times and idempotency keys; finds the tenants itself --------------
def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHATKEEP_ENCRYPTION")}
    return {**env, "PYTHONPATH": str(ROOT / "src"), **extra}


def _rekey_cmd(url: str) -> list[str]:
    return [sys.executable, "-m", "chatkeep.cli", "rekey", "--store", url]


def test_rekey_keeps_ids_and_idempotency_and_finds_every_tenant(backend: str, url: str) -> None:
    tenants = ["default", "acme", "b:c d"]
    batch = [Message.user("question"), Message.assistant("answer")]
    first: dict[str, Any] = {}
    with chatkeep.open_store(url, encryption=KEY_A) as sa:
        for t in tenants:
            s = sa.with_tenant(t)
            first[t] = s.append("s", batch, idempotency_key="req-1")
            s.append("s", Message.user(f"more {t}"))
            s.put_summary("s", f"summary {t}", 1)
        before = {t: [m.to_dict() for m in sa.with_tenant(t).read("s")] for t in tenants}
    done = subprocess.run(  # no --tenant: it lists them
        _rekey_cmd(url),
        env=_env(CHATKEEP_ENCRYPTION_KEY=KEY_B, CHATKEEP_ENCRYPTION_OLD_KEYS=KEY_A),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "3 session(s) looked at, 3 rewritten (9 message(s)), 0 skipped" in done.stderr
    with chatkeep.open_store(url, encryption=KEY_B) as sb:  # key A is gone
        for t in tenants:
            s = sb.with_tenant(t)
            assert [m.to_dict() for m in s.read("s")] == before[t]  # ids, seqs, times, all
            assert set(envelopes(sb, t, "s")) == {f"ck2:{B}:"}
            retry = s.append("s", batch, idempotency_key="req-1")  # the client retries
            assert retry.replayed
            assert [m.to_dict() for m in retry.messages] == [m.to_dict() for m in first[t].messages]
            assert len(s.read("s")) == 3  # not duplicated
            assert s.get_summary("s").text == f"summary {t}"  # type: ignore[union-attr]


# -- a killed rekey ----------------------------------------------------------------------------
SESSIONS, PER_SESSION = 120, 8


def _progress(store: Any) -> int:
    """How many messages are under key B (format 2), read raw through the backend."""
    inner = store._backend.inner
    n = 0
    for i in range(SESSIONS):
        rows = inner.read("default", f"s{i}", after_seq=0, limit=None, newest=False)
        n += sum(str(m.content).startswith(f"ck2:{B}:") for m in rows)
    return n


@pytest.mark.parametrize("backend", ["sqlite", "file", "postgres", "redis"])
def test_a_killed_rekey_leaves_everything_readable_and_a_rerun_completes(
    backend: str, url: str
) -> None:
    """``chatkeep rekey`` is SIGKILLed again and again while it runs; after every kill each
    message opens with the keyring that has both keys, unchanged (content, seq, id, time),
    and the idempotency keys still replay; a final run finishes and key A can go."""
    total = SESSIONS * PER_SESSION
    with chatkeep.open_store(url, encryption=KEY_A) as sa:
        for i in range(SESSIONS):
            msgs = [Message.user(f"s{i} m{j}") for j in range(PER_SESSION)]
            sa.append(f"s{i}", msgs, idempotency_key=f"k{i}")
    both = Keyring(KEY_B, [KEY_A])
    env = _env(CHATKEEP_ENCRYPTION_KEY=KEY_B, CHATKEEP_ENCRYPTION_OLD_KEYS=KEY_A)
    with chatkeep.open_store(url, encryption=both) as check:
        expected = {f"s{i}": [m.to_dict() for m in check.read(f"s{i}")] for i in range(SESSIONS)}
        kills, seen = [], 0
        while len(kills) < 4:
            proc = subprocess.Popen(_rekey_cmd(url), env=env, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and proc.poll() is None:
                now = _progress(check)
                if now > seen:  # it is rewriting: kill it, wherever it is
                    break
                time.sleep(0.005)
            if proc.poll() is not None:
                break  # it finished before we caught it mid-run
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            assert proc.stderr is not None
            proc.stderr.close()
            seen = _progress(check)
            kills.append(seen)
            for sid, rows in expected.items():  # every message opens, unchanged
                assert [m.to_dict() for m in check.read(sid)] == rows
        assert kills and 0 < kills[0] < total, f"no kill landed mid-run: {kills}"
        assert kills == sorted(kills)  # each rerun resumed and moved on
        final = subprocess.run(
            _rekey_cmd(url), env=env, capture_output=True, text=True, timeout=300
        )
        assert final.returncode == 0, final.stderr
        assert _progress(check) == total
    with chatkeep.open_store(url, encryption=KEY_B) as only_b:
        for sid, rows in expected.items():
            assert [m.to_dict() for m in only_b.read(sid)] == rows
        i = SESSIONS // 2
        retry = only_b.append(
            f"s{i}",
            [Message.user(f"s{i} m{j}") for j in range(PER_SESSION)],
            idempotency_key=f"k{i}",
        )
        assert retry.replayed and len(only_b.read(f"s{i}")) == PER_SESSION
    print(f"messages under the new key at each kill: {kills} of {total}")


# -- progress -----------------------------------------------------------------------------------
def test_rekey_shows_a_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/bar.db?synchronous=normal"
    with chatkeep.open_store(url, encryption=KEY_A) as sa:
        for i in range(200):
            sa.append(f"s{i}", Message.user(f"m{i}"))
    master, slave = os.openpty()  # stderr is a terminal, as when a person runs it
    env = _env(CHATKEEP_ENCRYPTION_KEY=KEY_B, CHATKEEP_ENCRYPTION_OLD_KEYS=KEY_A, TERM="xterm")
    proc = subprocess.Popen(
        _rekey_cmd(url), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    shown = b"".join(chunks).decode(errors="replace")
    assert "rekeying" in shown and "/200" in shown, shown[-2000:]
    assert "200 session(s) looked at, 200 rewritten" in shown


def test_rekey_prints_progress_lines_when_not_on_a_terminal() -> None:
    import io

    from rich.console import Console

    from chatkeep import cli_crypto

    buf = io.StringIO()
    real, cli_crypto.err = cli_crypto.err, Console(file=buf, width=200)
    try:
        ticker = cli_crypto._Ticker(3, enabled=True, every=0.0)
        for _ in range(3):
            ticker.tick()
        cli_crypto._Ticker(3, enabled=False, every=0.0).tick()  # a terminal has the bar
    finally:
        cli_crypto.err = real
    assert buf.getvalue().splitlines() == [f"rekey: {n}/3 session(s)" for n in (1, 2, 3)]
