"""file:// specifics: names inside the folder, torn and corrupt lines, locks, compaction."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

import chatkeep
from chatkeep import CorruptRecord, Message, StoreUnavailable


def files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.jsonl"))


def test_hostile_ids_stay_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "d"
    ids = ["../../escape", "/etc/passwd", "a/b/c", "..", ".", "~user", "x" * 256, "ü/ñ"]
    with chatkeep.open_store(f"file://{root}") as store:
        for sid in ids:
            store.append(sid, Message.user(sid))
        assert sorted(s.session_id for s in store.iter_sessions()) == sorted(ids)
        assert [store.read(sid)[0].text for sid in ids] == ids
    assert not (tmp_path / "escape.jsonl").exists()
    for path in files(root):
        assert path.resolve().is_relative_to(root.resolve())
        assert path.parent.parent == root  # dir/<tenant>/<session>.jsonl, nothing deeper


def test_torn_last_line_is_ignored_then_repaired(tmp_path: Path) -> None:
    root = tmp_path / "d"
    url = f"file://{root}"
    with chatkeep.open_store(url) as store:
        store.append("s", [Message.user("a"), Message.assistant("b")])
    (path,) = files(root)
    with open(path, "ab") as f:
        f.write(b'{"k":"b","m":[[3,"user",4,"TORN","2026-01-01T00:00:00.000000+00:00",{"con')
    with chatkeep.open_store(url) as store:  # a fresh process view
        assert [m.seq for m in store.read("s")] == [1, 2]
        assert store.append("s", Message.user("c")).first_seq == 3
        assert [m.text for m in store.read("s")] == ["a", "b", "c"]
    assert path.read_bytes().endswith(b"\n") and b"TORN" not in path.read_bytes()


def test_a_corrupt_line_is_an_error_not_a_gap(tmp_path: Path) -> None:
    root = tmp_path / "d"
    url = f"file://{root}"
    with chatkeep.open_store(url) as store:
        store.append("s", Message.user("a"))
        store.append("s", Message.user("b"))
    (path,) = files(root)
    lines = path.read_bytes().splitlines(keepends=True)
    lines[1] = b"this is not json\n"
    path.write_bytes(b"".join(lines))
    with chatkeep.open_store(url) as store:  # the other sessions stay usable
        with pytest.raises(CorruptRecord, match="unreadable"):
            store.read("s")
        with pytest.raises(CorruptRecord):
            store.append("s", Message.user("c"))  # nothing is written after a bad record
        store.append("other", Message.user("fine"))
    assert b"not json" in path.read_bytes()


def test_a_held_lock_times_out_with_a_clear_error(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(f"file://{root}?timeout=0.2") as store:
        store.append("s", Message.user("a"))
        lock = root / "default" / "s.lock"
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # as another process mid-write would
            with pytest.raises(StoreUnavailable, match="stayed locked"):
                store.append("s", Message.user("b"))
        finally:
            os.close(fd)
        assert [m.text for m in store.read("s")] == ["a"]


def test_compaction_keeps_the_conversation(tmp_path: Path) -> None:
    root = tmp_path / "d"
    with chatkeep.open_store(f"file://{root}") as store:
        store.append("s", [Message.user("keep"), Message.assistant("me")], idempotency_key="k")
        for i in range(300):
            store.append("s", Message.user(f"tmp {i}"))
            store.pop("s")
        store.update_session("s", metadata={"m": 1})
        store.put_summary("s", "kept", 1)
        (path,) = files(root)
        assert len(path.read_text().splitlines()) < 100  # compacted
        assert [m.text for m in store.read("s")] == ["keep", "me"]
        assert store.append("s", Message.user("again"), idempotency_key="k").replayed
        info = store.info("s")
        assert info is not None and info.metadata == {"m": 1}
        assert store.get_summary("s").text == "kept"  # type: ignore[union-attr]
