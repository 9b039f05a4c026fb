"""chatkeep's PostgreSQL store behind a private PgBouncer (tests/pgbouncer_support.py).

Transaction pooling: what breaks without ``?pgbouncer=true`` (startup options refused, psycopg's
prepared statements colliding across clients), and with it, real processes appending at once
(nothing lost or duplicated, gapless seqs), Memory.turn leases across processes, migrations of
a fresh schema by several processes at once, the async store under concurrent tasks,
PgBouncer's query_timeout as the statement bound, and ``chatkeep serve`` answering turns.
Session pooling, briefly. The conformance suite through the bouncer is in
test_pgbouncer_conformance.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import psycopg
import pytest
from tests.server.helpers import free_port, serve

import chatkeep
from chatkeep import InvalidURL, Message, StoreUnavailable
from chatkeep.stores.postgres_schema import parse_url
from pgbouncer_support import PgBouncer, bouncer, fresh_bouncer_url
from test_processes import TURNS, WRITER, race, run_py


@pytest.fixture(scope="module")
def tx_bouncer() -> Iterator[PgBouncer]:
    with bouncer("transaction") as b:
        yield b


@pytest.fixture
def tx_url(tx_bouncer: PgBouncer) -> Iterator[str]:
    with fresh_bouncer_url(tx_bouncer) as url:
        yield url


def schema_of(url: str) -> str:
    return url.split("schema=", 1)[1].split("&", 1)[0]


# -- the URL option ----------------------------------------------------------------------------


def test_the_option_turns_off_startup_options_and_prepared_statements() -> None:
    plain = parse_url("postgresql://h/db", "r")
    assert not plain.pgbouncer and plain.prepare_threshold == 5 and plain.statement_timeout == 30
    assert "statement_timeout=30000" in plain.connect_kwargs()["options"]
    for value in ("true", "1", "on", "yes", "TRUE"):
        o = parse_url(f"postgresql://h/db?pgbouncer={value}", "r")
        assert o.pgbouncer and o.prepare_threshold == 0 and o.statement_timeout == 0
        kw = o.connect_kwargs()
        assert "options" not in kw and kw["prepare_threshold"] is None
    # PgBouncer 1.21+ can keep prepared statements (max_prepared_statements): allowed on request
    o = parse_url("postgresql://h/db?pgbouncer=true&prepare_threshold=5", "r")
    assert o.connect_kwargs()["prepare_threshold"] == 5
    assert not parse_url("postgresql://h/db?pgbouncer=off", "r").pgbouncer
    assert parse_url("postgresql://h/db?pgbouncer=true&statement_timeout=0", "r").pgbouncer


@pytest.mark.parametrize(
    ("query", "why"),
    [
        ("pgbouncer=maybe", "use true or false"),
        ("pgbouncer=true&statement_timeout=10", "ALTER ROLE"),
        ("pgbouncer=true&pgbouncer=false", "twice"),
    ],
)
def test_bad_option_values_are_refused(query: str, why: str) -> None:
    with pytest.raises(InvalidURL, match=why):
        chatkeep.open_store(f"postgresql://127.0.0.1:1/db?{query}")


# -- transaction pooling: why the option is needed -----------------------------------------------


def test_without_the_option_transaction_pooling_breaks(tx_bouncer: PgBouncer) -> None:
    """The failures the option exists for, shown on the real pooler (so a PgBouncer that
    someday accepts both would show up here, and the docs could relax)."""
    with fresh_bouncer_url(tx_bouncer, "connect_timeout=1") as url:
        started = time.monotonic()
        hint = r"unsupported startup parameter: options; behind PgBouncer\? add \?pgbouncer=true"
        with pytest.raises(StoreUnavailable, match=hint):  # the startup options are refused
            chatkeep.open_store(url)
        with pytest.raises(StoreUnavailable, match=hint):
            asyncio.run(chatkeep.open_async_store(url))
        assert time.monotonic() - started < 20
    with fresh_bouncer_url(tx_bouncer, "statement_timeout=0") as url:
        # prepared statements (psycopg's default threshold) collide across clients
        with chatkeep.open_store(url) as a, chatkeep.open_store(url) as b:
            with pytest.raises(StoreUnavailable, match="prepared statement"):
                for i in range(50):
                    a.append("a", Message.user(f"a{i}"))
                    b.append("b", Message.user(f"b{i}"))


def test_a_failed_open_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool's timeout alone says nothing; the store's error carries the reason, even when
    the app silenced psycopg_pool's log (logging.config.dictConfig disables existing loggers
    by default)."""
    monkeypatch.setattr(logging.getLogger("psycopg.pool"), "disabled", True)
    url = f"postgresql://127.0.0.1:{free_port()}/db?connect_timeout=1"
    why = r"within 1s \(connect_timeout\): .*Connection refused"
    with pytest.raises(StoreUnavailable, match=why) as caught:
        chatkeep.open_store(url)
    assert "pgbouncer" not in str(caught.value)
    with pytest.raises(StoreUnavailable, match=why):
        asyncio.run(chatkeep.open_async_store(url))


# -- transaction pooling with ?pgbouncer=true -----------------------------------------------------


@pytest.mark.slow
def test_processes_append_through_the_bouncer(tx_url: str) -> None:
    """4 processes x 100 appends to one session, each store's pool (10) larger than the
    bouncer's server pool (4): every message once, seqs 1..400 with no gap."""
    race(WRITER, tx_url, processes=4, count=100)
    with chatkeep.open_store(tx_url) as store:
        rows = store.read("shared")
        info = store.info("shared")
    assert [m.seq for m in rows] == list(range(1, 401))
    texts = Counter(m.text for m in rows)
    assert set(texts.values()) == {1}
    assert set(texts) == {f"p{n}-{i}" for n in range(4) for i in range(100)}
    assert info is not None and info.message_count == 400
    assert info.total_tokens == sum(m.tokens for m in rows)


@pytest.mark.slow
def test_turns_from_three_processes_never_interleave(tx_url: str) -> None:
    """Memory.turn's lease (a row, not a session-level lock) holds across processes."""
    race(TURNS, tx_url, processes=3, count=10)
    with chatkeep.open_store(tx_url) as store:
        rows = store.read("turns")
    assert [m.seq for m in rows] == list(range(1, 61))
    for i in range(0, 60, 2):
        q, a = rows[i], rows[i + 1]
        assert q.role == "user" and a.role == "assistant"
        assert a.text == f"a {q.text.removeprefix('q ')} after {i + 1}"


OPENER = """
import sys, chatkeep
with chatkeep.open_store(sys.argv[1]) as store:
    store.append("m", chatkeep.Message.user(sys.argv[2]))
"""


@pytest.mark.slow
def test_processes_migrate_a_fresh_schema_once(tx_bouncer: PgBouncer) -> None:
    """Several processes open a brand-new schema at once through the bouncer: the
    transaction-scoped advisory lock lets exactly one apply each migration."""
    import subprocess
    import sys

    with fresh_bouncer_url(tx_bouncer) as url:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", OPENER, url, f"p{n}"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(4)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        with psycopg.connect(tx_bouncer.upstream) as conn:
            versions = conn.execute(
                f'SELECT version FROM "{schema_of(url)}".ck_migrations ORDER BY version'
            ).fetchall()
        assert versions == [(1,)]
        with chatkeep.open_store(url) as store:
            assert sorted(m.text for m in store.read("m")) == ["p0", "p1", "p2", "p3"]
            assert [m.seq for m in store.read("m")] == [1, 2, 3, 4]


def test_a_second_process_reads_what_the_first_wrote(tx_url: str) -> None:
    writer = run_py(
        """
        import sys, chatkeep
        with chatkeep.open_store(sys.argv[1]) as store:
            mem = chatkeep.Memory("user-1", store=store)
            mem.add("user", "My name is Ada.")
            mem.add("assistant", "Nice to meet you, Ada.", idempotency_key="k1")
        """,
        tx_url,
    )
    assert writer.returncode == 0, writer.stderr
    with chatkeep.open_store(tx_url) as store:
        assert [m.text for m in store.read("user-1")] == [
            "My name is Ada.",
            "Nice to meet you, Ada.",
        ]


def test_async_store_under_concurrent_tasks(tx_url: str) -> None:
    """One async store, 40 concurrent appends (more than its pool and the bouncer's): gapless,
    each once; idempotent retries replay instead of storing twice."""

    async def main() -> list[chatkeep.StoredMessage]:
        store = await chatkeep.open_async_store(tx_url)
        try:
            await asyncio.gather(
                *(
                    store.append("s", Message.user(f"m{i}"), idempotency_key=f"k{i}")
                    for i in range(40)
                )
            )
            again = await store.append("s", Message.user("m7"), idempotency_key="k7")
            assert again.first_seq == again.last_seq and again.first_seq <= 40
            return await store.read("s")
        finally:
            await store.close()

    rows = asyncio.run(main())
    assert [m.seq for m in rows] == list(range(1, 41))
    assert sorted(m.text for m in rows) == sorted(f"m{i}" for i in range(40))


def test_times_are_utc_whatever_the_server_time_zone(tx_bouncer: PgBouncer) -> None:
    """Through the bouncer no TimeZone=UTC startup option is sent; a server session in another
    time zone must still give back UTC times, the same instants as written."""
    zone = {"timezone": "America/New_York"}
    with PgBouncer(tx_bouncer.upstream, server=zone) as b, fresh_bouncer_url(b) as url:
        with psycopg.connect(b.url, prepare_threshold=None) as conn:
            assert conn.execute("SHOW TimeZone").fetchone() == ("America/New_York",)
        when = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
        with chatkeep.open_store(url) as store:
            store.append("s", Message.user("x", created_at=when))
            got = store.read("s")[0].created_at
            info = store.info("s")
        assert got == when and got.utcoffset() == timedelta(0)
        assert info is not None and info.created_at.utcoffset() == timedelta(0)
        assert abs(info.created_at - datetime.now(timezone.utc)) < timedelta(minutes=5)


class RowLocker:
    """Another client (straight to PostgreSQL) holding a session's row lock."""

    def __init__(self, upstream: str, url: str, session_id: str) -> None:
        self.conn = psycopg.connect(upstream)
        self.conn.execute(
            f'SELECT 1 FROM "{schema_of(url)}".ck_sessions WHERE session_id = %s FOR UPDATE',
            (session_id,),
        )

    def release(self) -> None:
        self.conn.rollback()
        self.conn.close()


def test_a_server_side_statement_timeout_bounds_a_blocked_append(tx_bouncer: PgBouncer) -> None:
    """statement_timeout cannot ride on the URL through PgBouncer; set on the server side
    instead (here by the bouncer's connect_query, like ALTER ROLE ... SET would) it still
    turns a blocked append into StoreUnavailable that stored nothing."""
    with PgBouncer(
        tx_bouncer.upstream, server={"connect_query": "SET statement_timeout = 1500"}
    ) as timed:
        with fresh_bouncer_url(timed) as url, chatkeep.open_store(url) as store:
            store.append("s", Message.user("one"))
            locker = RowLocker(timed.upstream, url, "s")
            try:
                started = time.monotonic()
                with pytest.raises(StoreUnavailable, match="statement_timeout"):
                    store.append("s", [Message.assistant("two"), Message.user("three")])
                assert time.monotonic() - started < 10
            finally:
                locker.release()
            assert [m.text for m in store.read("s")] == ["one"]
            assert store.append("s", Message.assistant("two")).first_seq == 2


def test_query_timeout_is_ambiguous_so_retry_with_an_idempotency_key(
    tx_bouncer: PgBouncer,
) -> None:
    """PgBouncer's query_timeout drops the connection but does not cancel the statement: the
    caller gets StoreUnavailable, yet a single-statement append can still commit once the lock
    frees. Retrying with the same idempotency key stores the messages exactly once."""
    with PgBouncer(tx_bouncer.upstream, query_timeout=1) as timed:
        with fresh_bouncer_url(timed) as url, chatkeep.open_store(url) as store:
            store.append("s", Message.user("one"))
            for key in ("k-two", None):
                locker = RowLocker(timed.upstream, url, "s")
                try:
                    started = time.monotonic()
                    with pytest.raises(StoreUnavailable):
                        store.append("s", Message.assistant("two"), idempotency_key=key)
                    assert time.monotonic() - started < 10
                finally:
                    locker.release()
                if key is not None:  # the retry: stored once whether or not the first landed
                    deadline = time.monotonic() + 10
                    while True:
                        try:
                            store.append("s", Message.assistant("two"), idempotency_key=key)
                            break
                        except StoreUnavailable:
                            assert time.monotonic() < deadline
                            time.sleep(0.2)
                    assert [m.text for m in store.read("s")] == ["one", "two"]
            time.sleep(1)  # the keyless append's statement, still running server-side
            texts = [m.text for m in store.read("s")]
            assert texts in (["one", "two"], ["one", "two", "two"])  # at most once more
            assert [m.seq for m in store.read("s")] == list(range(1, len(texts) + 1))


@pytest.mark.slow
def test_serve_answers_turns_through_the_bouncer(tx_url: str, tmp_path: Path) -> None:
    with serve(tmp_path, env={"CHATKEEP_URL": tx_url}) as (base, _):
        for text in ("Hi, my name is Ada.", "How are you?", "What is my name?"):
            r = httpx.post(
                f"{base}/v1/chat", json={"session_id": "web", "message": text}, timeout=60
            )
            assert r.status_code == 200, r.text
        assert "Ada" in r.json()["reply"]
        ready = httpx.get(f"{base}/readyz", timeout=10).json()
        assert ready["store"] == {"scheme": "postgresql", "persistent": True}
        items = httpx.get(f"{base}/v1/sessions/web/messages", timeout=30).json()["items"]
    assert [m["seq"] for m in items] == [1, 2, 3, 4, 5, 6]
    assert [m["role"] for m in items] == ["user", "assistant"] * 3
    with chatkeep.open_store(tx_url) as store:  # and it is really in PostgreSQL
        assert [m.text for m in store.read("web")][::2] == [
            "Hi, my name is Ada.",
            "How are you?",
            "What is my name?",
        ]


# -- session pooling, briefly -------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_session_pooling(flavour: str) -> None:
    """Session mode keeps a server connection per client, so prepared statements are fine
    (prepare_threshold=5 on request); the startup options are still refused, so the option is
    needed there too."""
    with (
        bouncer("session", pool_size=8) as b,
        fresh_bouncer_url(b, "pgbouncer=true&prepare_threshold=5") as url,
    ):

        async def work() -> list[int]:
            store = await chatkeep.open_async_store(url)
            try:
                for i in range(20):
                    await store.append("s", Message.user(f"m{i}"))
                assert len((await store.window("s", 10_000)).messages) == 20
                return [m.seq for m in await store.read("s")]
            finally:
                await store.close()

        if flavour == "async":
            seqs = asyncio.run(work())
        else:
            with chatkeep.open_store(url) as store:
                for i in range(20):
                    store.append("s", Message.user(f"m{i}"))
                mem = chatkeep.Memory("t", store=store)
                with mem.turn("question") as t:
                    t.reply("answer")
                assert len(store.window("s", 10_000).messages) == 20
                seqs = [m.seq for m in store.read("s")]
                assert [m.text for m in store.read("t")] == ["question", "answer"]
        assert seqs == list(range(1, 21))


def test_statement_pooling_is_refused_clearly_at_open() -> None:
    """Statement mode forbids transactions, which migrations (and several writes) need: the
    store fails to open with the pooler's reason instead of half-working."""
    with bouncer("statement") as b, fresh_bouncer_url(b) as url:
        with pytest.raises(StoreUnavailable, match="not allowed in statement pooling mode"):
            chatkeep.open_store(url)
        with pytest.raises(StoreUnavailable, match="not allowed in statement pooling mode"):
            asyncio.run(chatkeep.open_async_store(url))
