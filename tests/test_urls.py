"""Store URLs: which backend and path each form names; redaction; the default."""

from __future__ import annotations

from pathlib import Path

import pytest

import chatkeep
from chatkeep import InvalidURL
from chatkeep.stores import DEFAULT_URL, make_backend, redact
from chatkeep.stores.file import FileBackend
from chatkeep.stores.memory import MemoryBackend
from chatkeep.stores.sqlite import SQLiteBackend


@pytest.mark.parametrize(
    ("url", "kind", "path"),
    [
        ("sqlite:///chatkeep.db", SQLiteBackend, "chatkeep.db"),
        ("sqlite:///data/chat.db", SQLiteBackend, "data/chat.db"),
        ("sqlite:////var/lib/app/chat.db", SQLiteBackend, "/var/lib/app/chat.db"),
        ("file:///var/lib/app/chats", FileBackend, "/var/lib/app/chats"),
        ("file:chats/dev", FileBackend, "chats/dev"),
        ("memory://", MemoryBackend, None),
    ],
)
def test_url_forms(url: str, kind: type, path: str | None) -> None:
    backend = make_backend(url)
    assert isinstance(backend, kind)
    if isinstance(backend, SQLiteBackend):
        assert str(backend.path) == path
    if isinstance(backend, FileBackend):
        assert str(backend.root) == path


def test_options_reach_the_backend() -> None:
    backend = make_backend("sqlite:///x.db?synchronous=normal&timeout=2.5")
    assert isinstance(backend, SQLiteBackend)
    assert (backend.synchronous, backend.timeout) == ("NORMAL", 2.5)
    with pytest.raises(InvalidURL, match="timeout must be between"):
        make_backend("sqlite:///x.db?timeout=0")


def test_passwords_never_reach_messages() -> None:
    assert redact("postgresql://app:s3cret@db:5432/chat") == "postgresql://app:***@db:5432/chat"
    with pytest.raises(InvalidURL) as err:
        make_backend("postgresql+bogus://app:s3cret@db/chat")
    assert "s3cret" not in str(err.value)


def test_default_is_sqlite_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHATKEEP_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    assert chatkeep.default_url() == DEFAULT_URL == "sqlite:///chatkeep.db"
    with chatkeep.open_store() as store:
        store.add("s", "user", "hi")
    assert (tmp_path / "chatkeep.db").exists()
    monkeypatch.setenv("CHATKEEP_URL", "memory://")
    assert chatkeep.default_url() == "memory://"
