"""A full disk under the SQLite and file stores (a small tmpfs of their own, filled up):
append, replace and turn raise StoreFull saying so, nothing is half-written, reads keep
working, and writes work again once space is freed. Over HTTP a full disk is 507. A Redis
whose AOF disk fills up stops (its choice); nothing acknowledged is lost."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from tests.reliability.servers import RedisServer, Tmpfs, need

import chatkeep
from chatkeep import Memory, Message, StoreFull, StoreUnavailable
from chatkeep.server import Settings, create_app

BACKENDS = ["sqlite", "file"]


@pytest.fixture
def disk() -> Iterator[Tmpfs]:
    fs = need(Tmpfs, 1024 * 1024)
    try:
        yield fs
    finally:
        fs.close()


def url_on(kind: str, folder: Path) -> str:
    return f"sqlite:///{folder}/chat.db" if kind == "sqlite" else f"file://{folder}/files"


def texts(store: chatkeep.Store, sid: str) -> list[str]:
    rows = store.read(sid)
    assert [m.seq for m in rows] == list(range(1, len(rows) + 1))  # gapless
    return [m.text for m in rows]


def assert_intact(kind: str, folder: Path) -> None:
    """The raw files are whole: SQLite's integrity check, or every JSON line complete."""
    if kind == "sqlite":
        conn = sqlite3.connect(f"file:{folder}/chat.db?mode=ro", uri=True)
        try:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        finally:
            conn.close()
        return
    files = list((folder / "files").rglob("*.jsonl"))
    assert files
    for path in files:
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"torn last line in {path}"
        for line in data.splitlines():
            json.loads(line)


def fill_until_full(store: chatkeep.Store, sid: str, acked: list[str]) -> StoreFull:
    """Append 8 KiB messages until the disk is full; returns the error (bounded)."""
    for i in range(400):
        text = f"fill-{i}-" + "x" * 8192
        try:
            store.append(sid, [Message.user(text)], idempotency_key=f"fill-{i}")
        except StoreFull as exc:
            return exc
        acked.append(text)
    raise AssertionError("400 appends of 8 KiB fitted in a 1 MiB disk")


@pytest.mark.parametrize("kind", BACKENDS)
def test_a_full_disk_is_a_clear_error_that_writes_nothing(disk: Tmpfs, kind: str) -> None:
    url = url_on(kind, disk.path)
    with chatkeep.open_store(url) as store:
        acked = [f"before {i}" for i in range(5)]
        for text in acked:
            store.append("s", [Message.user(text)])
        filler = disk.fill()
        err = fill_until_full(store, "s", acked)
        assert "disk is full" in str(err) and isinstance(err, chatkeep.StoreUnavailable)
        assert isinstance(err.__cause__, OSError | sqlite3.Error)  # the driver's error chained
        failed_key = f"fill-{len(acked) - 5}"
        # the other writes fail the same way, and change nothing
        with pytest.raises(StoreFull, match="disk is full"):
            store.append("s", [Message.user("y" * 8192)] * 4)
        with pytest.raises(StoreFull, match="disk is full"):
            store.replace("s", [Message.user("z" * 8192)] * 20)
        with pytest.raises(StoreFull, match="disk is full"):
            with Memory("s", store=store).turn("a turn " + "t" * 8192) as turn:
                turn.reply("r" * 8192)
        assert texts(store, "s") == acked  # reads work; every acknowledged write is there
        assert_intact(kind, disk.path)

        filler.unlink()  # space is back: the same store writes again
        retried = store.append("s", [Message.user("the failed one")], idempotency_key=failed_key)
        assert retried.first_seq == len(acked) + 1 and not retried.replayed
        with Memory("s", store=store).turn("after") as turn:
            turn.reply("ok")
        assert texts(store, "s")[-3:] == ["the failed one", "after", "ok"]
        store.replace("s", [Message.user("compacted")])
        assert texts(store, "s") == ["compacted"]
    assert_intact(kind, disk.path)
    with chatkeep.open_store(url) as again:  # and a new process-like open reads it back
        assert texts(again, "s") == ["compacted"]


@pytest.mark.parametrize("kind", BACKENDS)
def test_the_server_answers_507_and_recovers(disk: Tmpfs, kind: str, tmp_path: Path) -> None:
    settings = Settings(store_url=url_on(kind, disk.path), keys_file=str(tmp_path / "k.json"))
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:

        def post(text: str, key: str) -> tuple[int, dict[str, object], str | None]:
            r = client.post(
                "/v1/sessions/s/messages",
                json={"messages": [{"role": "user", "content": text}]},
                headers={"Idempotency-Key": key},
            )
            return r.status_code, r.json(), r.headers.get("retry-after")

        assert post("hello", "k0")[0] == 201
        filler = disk.fill()
        for i in range(400):
            status, body, retry_after = post("x" * 8192, f"k{i + 1}")
            if status != 201:
                break
        assert status == 507, body
        error = body["error"]
        assert isinstance(error, dict) and error["code"] == "store_full"
        assert "disk is full" in error["message"] and retry_after is None
        assert client.get("/readyz").status_code == 200  # reads still work
        stored = client.get("/v1/sessions/s/messages", params={"limit": 1000}).json()["items"]
        assert len(stored) == i + 1  # hello + every 201, nothing of the 507
        filler.unlink()
        assert post("x" * 8192, f"k{i + 1}")[0] == 201  # the same key, now stored once
        after = client.get("/v1/sessions/s/messages", params={"limit": 1000}).json()["items"]
        assert [m["seq"] for m in after] == list(range(1, i + 3))
    assert_intact(kind, disk.path)


def test_redis_whose_aof_disk_fills_up_stops_and_loses_nothing_acknowledged() -> None:
    """With ``appendfsync always`` Redis exits on a failed AOF write rather than acknowledge
    what it could not persist: chatkeep sees an outage (StoreUnavailable), and once space is
    freed and Redis restarted the same store has every acknowledged write, and only those."""
    fs = need(Tmpfs, 2 * 1024 * 1024)
    try:
        server = need(RedisServer, fs.path)
        server.start()
        store = chatkeep.open_store(server.url + "?timeout=2&connect_timeout=1")
        try:
            acked = [f"before {i}" for i in range(5)]
            for text in acked:
                store.append("s", [Message.user(text)])
            filler = fs.fill()
            with pytest.raises(StoreUnavailable) as err:
                for i in range(400):
                    store.append("s", [Message.user(f"{i}-" + "x" * 8192)], idempotency_key=f"k{i}")
                    acked.append(f"{i}-" + "x" * 8192)
            failed_key = f"k{len(acked) - 5}"
            assert server.proc is not None and server.proc.wait(10) != 0  # Redis exited
            assert "Can't recover from AOF write error" in (fs.path / "log.txt").read_text()
            assert err.value.__cause__ is not None
            filler.unlink()
            server.start()  # same folder: the AOF (a truncated tail is dropped) is replayed
            assert texts(store, "s") == acked
            retried = store.append("s", [Message.user("retried")], idempotency_key=failed_key)
            assert retried.first_seq == len(acked) + 1 and not retried.replayed
        finally:
            store.close()
            server.close()
    finally:
        fs.close()
