"""file:// specifics: names inside the folder, torn and corrupt lines, real processes, locks.

Generic behaviour is in tests/conformance (run against every backend); these tests cover only
what the JSON Lines layout adds. Real files and real processes, no mocks.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import textwrap
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import chatkeep
from chatkeep import CorruptRecord, Message, StoreUnavailable
from chatkeep.errors import TokenizerMismatch
from chatkeep.types import utcnow

HOSTILE_IDS = [
    "../../etc/passwd",
    "/etc/passwd",
    "a/b",
    "a/b/c",
    "..",
    ".",
    ".hidden",
    "~user",
    "c:\\windows",
    "user:42/thread:7",
    "100%",
    "%2F",  # must not collide with "/"
    "Alice",
    "alice",  # must not collide with "Alice" on a case-insensitive file system
    "ü/ñ",
    "日本語の会話",
    "😀 emoji",
    "x" * 256,  # too long for a file name: stored under a hash
    "y" * 255,
    "é" * 256,
]


def url_of(root: Path, **query: str) -> str:
    q = "&".join(f"{k}={v}" for k, v in query.items())
    return f"file://{root}" + (f"?{q}" if q else "")


def files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.jsonl"))


def run_py(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_hostile_ids_stay_inside_the_folder_and_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        for sid in HOSTILE_IDS:
            store.append(sid, Message.user(sid))
        listed = [s.session_id for s in store.iter_sessions()]
        assert listed == sorted(HOSTILE_IDS)  # by real id, not by file name
        paged = []
        cursor = None
        while True:
            page = store.sessions(limit=3, cursor=cursor)
            paged += [s.session_id for s in page.items]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert paged == listed
        assert [s.session_id for s in store.iter_sessions(prefix="a")] == ["a/b", "a/b/c", "alice"]
        assert [s.session_id for s in store.iter_sessions(prefix="x")] == ["x" * 256]
        for sid in HOSTILE_IDS:
            assert [m.text for m in store.read(sid)] == [sid]
        assert store.delete("../../etc/passwd")
        assert not store.delete("../../etc/passwd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # nothing escaped
    found = files(root)
    assert len(found) == len(HOSTILE_IDS) - 1
    for path in found:
        assert path.parent.parent == root  # dir/<tenant>/<session>.jsonl, nothing deeper
        assert len(path.name.encode()) <= 255
        assert not path.name.startswith(".")
        assert path.name.count(".") <= 2  # <name>.jsonl or <sha256>.h.jsonl
    names = {p.name.lower() for p in found}
    assert len(names) == len(found)  # distinct even when case is ignored


def test_hostile_tenants_are_folders_inside_and_erase_removes_them(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        evil = store.with_tenant("../outside")
        long_tenant = store.with_tenant("Ω" * 64)
        for view in (store, evil, long_tenant):
            view.append("s", Message.user(view.tenant))
            view.acquire_lease("s", owner="me", ttl=30)
        assert [m.text for m in evil.read("s")] == ["../outside"]
        assert [m.text for m in long_tenant.read("s")] == ["Ω" * 64]
        assert [s.tenant for s in evil.iter_sessions()] == ["../outside"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
        tenant_dirs = [p for p in root.iterdir() if p.is_dir()]
        assert len(tenant_dirs) == 3

        assert store.erase("../outside") == 1
        assert evil.read("s") == []
        assert [m.text for m in store.read("s")] == ["default"]  # other tenants untouched
        assert len([p for p in root.iterdir() if p.is_dir()]) == 2  # every file of it is gone
        assert long_tenant.erase() == 1
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["default"]


def test_torn_last_line_is_ignored_then_truncated_by_the_next_append(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        store.append("s", [Message.user("a"), Message.assistant("b")])
    (path,) = files(root)
    acknowledged = path.read_bytes()
    with open(path, "ab") as f:  # a writer that crashed mid-line, before fsync returned
        f.write(b'{"k":"b","m":[[3,"user",4,"TORN","2026-01-01T00:00:00.000000+00:00",{"con')
    with chatkeep.open_store(url_of(root)) as store:
        assert [m.seq for m in store.read("s")] == [1, 2]
        info = store.info("s")
        assert info is not None and info.last_seq == 2
        assert b"TORN" in path.read_bytes()  # readers leave the file alone
        assert store.append("s", Message.user("c")).first_seq == 3
        assert store.append("s", Message.user("d")).first_seq == 4
        assert [(m.seq, m.text) for m in store.read("s")] == [
            (1, "a"),
            (2, "b"),
            (3, "c"),
            (4, "d"),
        ]
    data = path.read_bytes()
    assert b"TORN" not in data and data.startswith(acknowledged) and data.endswith(b"\n")


def test_a_torn_first_write_is_no_session(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        store.append("other", Message.user("x"))
        path = root / "default" / "s.jsonl"
        path.write_bytes(b'{"k":"h","tenant":"default","sid":"s","at":"2026-')
        assert store.read("s") == [] and store.info("s") is None
        assert [s.session_id for s in store.iter_sessions()] == ["other"]
        assert store.append("s", Message.user("first")).first_seq == 1
        assert [m.text for m in store.read("s")] == ["first"]


def test_a_corrupt_middle_line_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        for text in ("a", "b", "c"):
            store.append("s", Message.user(text))
    (path,) = files(root)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b'{"k":"b","m":[[2,"user",1,"id","not a time",{"content":"b"}]],"at":"x"}\n'
    path.write_bytes(b"".join(lines))
    with chatkeep.open_store(url_of(root)) as store:
        with pytest.raises(CorruptRecord, match=r"s\.jsonl, line 3"):
            store.read("s")
        with pytest.raises(CorruptRecord, match="line 3"):
            store.append("s", Message.user("d"))  # nothing is written after a bad record
        with pytest.raises(CorruptRecord):
            store.info("s")
        store.append("other", Message.user("fine"))  # other sessions stay usable
        assert store.delete("s")  # and a corrupt session can still be deleted
    assert not path.exists()


def test_a_corrupt_line_that_is_valid_json_but_breaks_seqs_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        store.append("s", Message.user("a"))
        store.append("s", Message.user("b"))
    (path,) = files(root)
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[1]  # seq 1 vanishes: seq 2 would follow seq 0
    path.write_bytes(b"".join(lines))
    with chatkeep.open_store(url_of(root)) as store:
        with pytest.raises(CorruptRecord, match="line 2"):
            store.read("s")


def test_a_second_process_sees_what_the_first_wrote(tmp_path: Path) -> None:
    url = url_of(tmp_path / "d")
    with chatkeep.open_store(url) as store:
        store.append("s", [Message.user("hello"), Message.assistant("hi")])
        store.update_session("s", metadata={"user": "ada"})
        store.put_summary("s", "greetings", 2)
        before = store.read("s")  # cached in this process
        child = run_py(
            """
            import sys, json, chatkeep
            from chatkeep import Message
            with chatkeep.open_store(sys.argv[1]) as store:
                rows = store.read("s")
                info = store.info("s")
                print(json.dumps([[m.seq, m.text, m.id] for m in rows]))
                print(json.dumps([info.metadata, store.get_summary("s").text]))
                store.append("s", Message.user("from the child"))
            """,
            url,
        )
        assert child.returncode == 0, child.stderr
        out = child.stdout.splitlines()
        ids = [m.id for m in before]
        assert out[0] == f'[[1, "hello", "{ids[0]}"], [2, "hi", "{ids[1]}"]]'
        assert out[1] == '[{"user": "ada"}, "greetings"]'
        assert [m.text for m in store.read("s")] == ["hello", "hi", "from the child"]


def test_a_session_deleted_and_recreated_elsewhere_is_not_read_from_a_stale_cache(
    tmp_path: Path,
) -> None:
    url = url_of(tmp_path / "d")
    with chatkeep.open_store(url) as store:
        store.append("s", [Message.user("old 1"), Message.user("old 2")])
        assert len(store.read("s")) == 2  # this process now caches the file's state
        child = run_py(
            """
            import sys, chatkeep
            from chatkeep import Message
            with chatkeep.open_store(sys.argv[1]) as store:
                store.delete("s")
                for i in range(6):  # a new file, longer than the old one (inodes get reused)
                    store.append("s", Message.user(f"new {i}"))
            """,
            url,
        )
        assert child.returncode == 0, child.stderr
        assert [m.text for m in store.read("s")] == [f"new {i}" for i in range(6)]
        assert store.append("s", Message.user("next")).first_seq == 7


def _append_worker(url: str, name: str, count: int, start: Any) -> None:
    with chatkeep.open_store(url) as store:
        start.wait(timeout=60)  # every process is up: now they race
        for i in range(count):
            store.append("shared", Message.user(f"{name}:{i}"))
            time.sleep(0.001)  # like an app between turns: lets the writers interleave


@pytest.mark.slow
def test_four_processes_append_to_one_session_without_loss_or_gaps(tmp_path: Path) -> None:
    url = url_of(tmp_path / "d")
    with chatkeep.open_store(url):
        pass
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_append_worker, args=(url, f"p{n}", 50, start)) for n in range(4)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + 120
    for p in procs:
        p.join(timeout=max(0.1, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with chatkeep.open_store(url) as store:
        rows = store.read("shared")
    assert [m.seq for m in rows] == list(range(1, 201))
    assert Counter(m.text for m in rows) == Counter(
        f"p{n}:{i}" for n in range(4) for i in range(50)
    )
    for n in range(4):  # each writer's messages keep their order
        mine = [int(m.text.split(":")[1]) for m in rows if m.text.startswith(f"p{n}:")]
        assert mine == list(range(50))


def test_threads_and_a_process_share_the_locks(tmp_path: Path) -> None:
    import threading

    url = url_of(tmp_path / "d")
    with chatkeep.open_store(url) as store:
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent(
                    """
                    import sys, chatkeep
                    from chatkeep import Message
                    with chatkeep.open_store(sys.argv[1]) as store:
                        for i in range(40):
                            store.append("t", Message.user(f"child:{i}"))
                    """
                ),
                url,
            ],
            stderr=subprocess.PIPE,
            text=True,
        )

        def work(n: int) -> None:
            for i in range(40):
                store.append("t", Message.user(f"t{n}:{i}"))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        rows = store.read("t")
    assert [m.seq for m in rows] == list(range(1, 161))
    assert len({m.text for m in rows}) == 160


def test_a_lock_held_by_another_process_times_out_with_stores_unavailable(
    tmp_path: Path,
) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root, timeout="0.2")) as store:
        store.append("s", Message.user("a"))
        lock = root / "default" / "s.lock"
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import fcntl, os, sys, time\n"
                "fd = os.open(sys.argv[1], os.O_RDWR)\n"
                "fcntl.flock(fd, fcntl.LOCK_EX)\n"
                "print('locked', flush=True)\n"
                "time.sleep(60)\n",
                str(lock),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match=r"s\.lock stayed locked") as err:
                store.append("s", Message.user("b"))
            assert time.monotonic() - started < 5
            assert str(lock) in str(err.value)
            with pytest.raises(StoreUnavailable):
                store.read("s")  # readers wait for the writer too
        finally:
            holder.kill()
            holder.wait(timeout=10)
        assert store.append("s", Message.user("c")).first_seq == 2  # lock gone with the process
        assert [m.text for m in store.read("s")] == ["a", "c"]


def test_compaction_keeps_the_conversation_and_its_keys(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        store.append("s", [Message.user("keep"), Message.assistant("me")], idempotency_key="k")
        store.put_summary("s", "kept", 1)
        for i in range(300):
            store.append("s", Message.user(f"tmp {i}"))
            store.pop("s")
        store.update_session("s", metadata={"m": 1})
        before = store.info("s")
        (path,) = files(root)
        assert len(path.read_text().splitlines()) < 100  # compacted
        assert not list(root.rglob("*.tmp"))
    with chatkeep.open_store(url_of(root)) as store:  # read back from the rewritten file
        assert [m.text for m in store.read("s")] == ["keep", "me"]
        again = store.append("s", Message.user("again"), idempotency_key="k")
        assert again.replayed and [m.text for m in again.messages] == ["keep", "me"]
        assert store.info("s") == before
        summary = store.get_summary("s")
        assert summary is not None and summary.text == "kept"


def test_expired_sessions_are_purged_from_disk(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        store.append("old", Message.user("x"))
        store.append("new", Message.user("y"))
        store.update_session("old", metadata=None, expires_at=utcnow() - timedelta(seconds=1))
        store.update_session("new", metadata=None, expires_at=utcnow() + timedelta(hours=1))
        assert store.read("old") == []
        assert store.purge_expired() == 1
        assert sorted(p.name for p in (root / "default").iterdir()) == ["new.jsonl", "new.lock"]


def test_the_folder_is_created_but_not_its_parent(tmp_path: Path) -> None:
    with chatkeep.open_store(url_of(tmp_path / "new")):
        pass
    assert (tmp_path / "new" / "chatkeep.json").is_file()
    with pytest.raises(StoreUnavailable, match="does not exist"):
        chatkeep.open_store(url_of(tmp_path / "missing" / "d"))


def test_the_tokenizer_is_recorded_in_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(url_of(root)) as store:
        name = store.tokenizer.name
    assert f'"tokenizer":"{name}"' in (root / "chatkeep.json").read_text()
    (root / "chatkeep.json").write_text('{"format":1,"tokenizer":"someone-else"}')
    with pytest.raises(TokenizerMismatch, match="someone-else"):
        chatkeep.open_store(url_of(root))


def test_records_keep_framework_payloads_byte_for_byte(tmp_path: Path) -> None:
    root = tmp_path / "d"
    msg = Message.assistant(
        "",
        tool_calls=[{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        metadata={"nested": {"ü": [1, 2.5, None, True]}, "line\nbreak": "\u2028"},
        format="langchain",
        payload={"type": "ai", "data": {"additional_kwargs": {"x": 1}}},
    )
    with chatkeep.open_store(url_of(root)) as store:
        written = store.append("s", msg).messages[0]
    with chatkeep.open_store(url_of(root)) as store:
        (back,) = store.read("s")
    assert back == written and back.message() == msg
    (path,) = files(root)
    assert len(path.read_bytes().splitlines()) == 2  # header + one batch: no raw newline
