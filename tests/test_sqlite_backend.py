"""SQLite-specific behaviour: pragmas, migrations, physical deletion, query plans, errors."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest

import chatkeep
from chatkeep import InvalidURL, Message, StoreUnavailable, TokenizerMismatch
from chatkeep.stores.sqlite_schema import SCHEMA_VERSION
from chatkeep.types import utcnow


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path)


def test_wal_full_sync_and_migrations(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with chatkeep.open_store(f"sqlite:///{path}") as store:
        store.append("s", Message.user("x"))
        conn = store._backend._conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with chatkeep.open_store(f"sqlite:///{path}?synchronous=normal") as store:
        conn = store._backend._conn  # type: ignore[attr-defined]
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    with raw(path) as conn:
        versions = conn.execute("SELECT version FROM ck_migrations").fetchall()
    assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]  # applied once each


def test_many_first_opens_of_one_new_file_all_succeed(tmp_path: Path) -> None:
    # Workers starting together on a new file race to switch it to WAL; SQLite answers the
    # loser "database is locked" at once (no busy wait). Before open() retried, about one
    # round in a hundred failed here.
    failures: list[BaseException] = []
    for round_no in range(120):
        url = f"sqlite:///{tmp_path}/r{round_no}.db"
        barrier = threading.Barrier(12)

        def opener(url: str = url, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                chatkeep.open_store(url).close()
            except BaseException as exc:  # collected and asserted below
                failures.append(exc)

        threads = [threading.Thread(target=opener) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == []


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    chatkeep.open_store(f"sqlite:///{path}").close()
    with raw(path) as conn:
        conn.execute("INSERT INTO ck_migrations VALUES (999, 'from the future', 'x')")
    with pytest.raises(StoreUnavailable, match="newer than this chatkeep"):
        chatkeep.open_store(f"sqlite:///{path}")


def test_tokenizer_is_recorded_and_never_mixed(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    chatkeep.open_store(f"sqlite:///{path}").close()

    class Other:
        name = "other-tokenizer"

        def count(self, text: str) -> int:
            return len(text)

    with pytest.raises(TokenizerMismatch, match="other-tokenizer"):
        chatkeep.open_store(f"sqlite:///{path}", tokenizer=Other())


def test_purge_and_erase_really_delete_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with chatkeep.open_store(f"sqlite:///{path}") as store:
        store.append("old", [Message.user("a"), Message.assistant("b")], idempotency_key="k")
        store.update_session("old", expires_at=utcnow() - timedelta(seconds=1))
        acme = store.with_tenant("acme")
        acme.append("x", Message.user("secret"))
        acme.acquire_lease("x", owner="o", ttl=5)
        assert store.purge_expired() == 1
        assert store.erase("acme") == 1
    with raw(path) as conn:
        for table in ("ck_messages", "ck_sessions", "ck_idempotency", "ck_leases"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0, table
        # no trace of the content in the database file's live pages
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("VACUUM")
    assert b"secret" not in path.read_bytes()


def test_window_queries_use_the_indexes(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with chatkeep.open_store(f"sqlite:///{path}") as store:
        store.append("s", [Message.user("x")])
    with raw(path) as conn:
        plan = " ".join(
            str(r[3])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT seq FROM ck_messages WHERE session_pk = ? "
                "AND prefix_tokens >= ? ORDER BY prefix_tokens LIMIT 1",
                (1, 0),
            )
        )
        assert "ck_messages_prefix" in plan and "SCAN" not in plan
        plan = " ".join(
            str(r[3])
            for r in conn.execute(
                "EXPLAIN QUERY PLAN SELECT seq FROM ck_messages INDEXED BY ck_messages_pinned "
                "WHERE session_pk = ? AND role IN ('developer', 'system') ORDER BY seq",
                (1,),
            )
        )
        assert "ck_messages_pinned" in plan and "SCAN" not in plan
        from chatkeep.stores.sqlite import _TAIL_SQL

        plan = " ".join(
            str(r[3]) for r in conn.execute("EXPLAIN QUERY PLAN " + _TAIL_SQL, (1, 0, 0, 2, 1))
        )
        assert "PRIMARY KEY (session_pk=? AND seq>?)" in plan and "SCAN" not in plan


def test_latest_user_seq_survives_pop_and_clear(tmp_path: Path) -> None:
    with chatkeep.open_store(f"sqlite:///{tmp_path}/a.db") as store:
        store.append("s", [Message.user("q1 " * 50), Message.assistant("a1 " * 50)])
        store.append("s", [Message.user("q2"), Message.assistant("a2")])
        store.pop("s")
        store.pop("s")  # the latest user message goes; q1 is the latest again
        w = store.window("s", 10)
        assert [m.text.split()[0] for m in w.messages] == ["q1", "a1"] and w.over_budget
        store.clear("s")
        store.append("s", Message.assistant("hello"))
        assert store.window("s", 10).messages == ()  # no user message: nothing to anchor


def test_read_only_database_gives_store_unavailable_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with chatkeep.open_store(f"sqlite:///{path}") as store:
        store.append("s", Message.user("before"))
        # the database refuses writes (as on a read-only mount or a full disk)
        store._backend._conn.execute("PRAGMA query_only = ON")  # type: ignore[attr-defined]
        with pytest.raises(StoreUnavailable) as err:
            store.append("s", [Message.user("a"), Message.assistant("b")])
        assert isinstance(err.value.__cause__, sqlite3.Error)
        store._backend._conn.execute("PRAGMA query_only = OFF")  # type: ignore[attr-defined]
        assert [m.text for m in store.read("s")] == ["before"]


def test_disk_full_gives_store_unavailable_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    with chatkeep.open_store(f"sqlite:///{path}") as store:
        store.append("s", Message.user("before"))
        conn = store._backend._conn  # type: ignore[attr-defined]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        with pytest.raises(StoreUnavailable, match="full"):
            store.append("s", [Message.user("y" * 50_000) for _ in range(5)])
        conn.execute("PRAGMA max_page_count = 1073741823")
        assert [m.text for m in store.read("s")] == ["before"]
        assert store.append("s", Message.user("after")).first_seq == 2


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite://host/x.db",
        "sqlite:///x.db?synchronous=sometimes",
        "sqlite:///x.db?timeout=abc",
        "sqlite:///x.db?bogus=1",
        "postgres-ish://x",
        "not a url",
    ],
)
def test_bad_urls_are_explained(url: str) -> None:
    with pytest.raises(InvalidURL):
        chatkeep.open_store(url)


def test_missing_directory_is_explained(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="does not exist"):
        chatkeep.open_store(f"sqlite:///{tmp_path}/nope/x.db")


def test_append_without_returning_support(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite before 3.35 has no UPDATE ... RETURNING; the fallback keeps every guarantee."""
    import chatkeep.stores.sqlite_append as append_mod

    monkeypatch.setattr(append_mod, "HAS_RETURNING", False)
    with chatkeep.open_store(f"sqlite:///{tmp_path}/a.db") as store:
        first = store.append("s", [Message.user("a"), Message.assistant("b")], idempotency_key="k")
        assert (first.first_seq, first.last_seq) == (1, 2)
        assert store.append("s", Message.user("x"), idempotency_key="k").replayed
        with pytest.raises(chatkeep.ConflictError):
            store.append("s", Message.user("c"), expect_last_seq=1)
        assert store.append("s", Message.user("c"), expect_last_seq=2).first_seq == 3
        info = store.info("s")
        assert info is not None and info.total_tokens == sum(m.tokens for m in store.read("s"))
        assert [m.seq for m in store.window("s", 1000).messages] == [1, 2, 3]


@pytest.mark.parametrize(
    ("column", "value"),
    [("body", "not json"), ("body", "[1, 2]"), ("body", '{"content": 5}'), ("role", "wizard")],
)
def test_a_corrupt_row_is_an_error_not_a_gap(tmp_path: Path, column: str, value: str) -> None:
    path = tmp_path / "a.db"
    with chatkeep.open_store(f"sqlite:///{path}") as store:
        store.append("s", [Message.user("a"), Message.assistant("b"), Message.user("c")])
    with raw(path) as conn:
        conn.execute(f"UPDATE ck_messages SET {column} = ? WHERE seq = 2", (value,))
    with chatkeep.open_store(f"sqlite:///{path}") as store:
        with pytest.raises(chatkeep.CorruptRecord, match="seq 2"):
            store.read("s")
        with pytest.raises(chatkeep.CorruptRecord):
            store.window("s", 1000)
        assert [m.text for m in store.read("s", after_seq=2)] == ["c"]
