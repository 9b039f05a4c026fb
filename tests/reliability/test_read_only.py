"""The SQLite file and the file store's folder on a read-only mount: opening the store says
"read-only" (not a bare "unable to open"), the doctor reports it the same way, and nothing on
the disk changes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.reliability.servers import Tmpfs, need

import chatkeep
from chatkeep import Message, StoreUnavailable

URLS = {"sqlite": "sqlite:///{}/chat.db", "file": "file://{}/files"}


@pytest.fixture
def disk() -> Iterator[Tmpfs]:
    fs = need(Tmpfs, 1024 * 1024)
    try:
        yield fs
    finally:
        fs.close()


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("kind", sorted(URLS))
def test_a_read_only_store_is_a_clear_error_and_stays_untouched(disk: Tmpfs, kind: str) -> None:
    url = URLS[kind].format(disk.path)
    with chatkeep.open_store(url) as store:
        store.append("s", [Message.user("kept"), Message.assistant("safe")])
    before = fingerprint(disk.path)
    disk.read_only()
    with pytest.raises(StoreUnavailable, match="read-only") as err:
        chatkeep.open_store(url)
    assert err.value.__cause__ is not None  # the driver's own error is chained
    doctor = subprocess.run(
        [sys.executable, "-m", "chatkeep.cli", "doctor", "--store", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert doctor.returncode == 1 and "CK202" in doctor.stdout and "read-only" in doctor.stdout
    assert fingerprint(disk.path) == before  # nothing was written, nothing was created
    disk.read_write()
    with chatkeep.open_store(url) as store:  # writable again: everything is there
        assert [m.text for m in store.read("s")] == ["kept", "safe"]
        assert store.append("s", Message.user("again")).first_seq == 3
