"""PostgreSQL-specific behaviour (the shared behaviour is the conformance suite's job).

Real server only: several processes appending to one session, processes racing to migrate
one schema, a closed port, connections killed mid-use, a row lock that outlasts the
statement timeout, hostile identifiers.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest

import chatkeep
from chatkeep import InvalidURL, Message, StoreUnavailable, TokenizerMismatch
from chatkeep.stores.postgres import PostgresBackend
from chatkeep.stores.postgres_async import AsyncPostgresBackend
from chatkeep.types import utcnow
from pg_support import drop_schema, fresh_postgres_url, server_url, with_schema


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres_url() as url:
        yield url


def schema_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["schema"][0]


def sql_rows(url: str, query: str) -> list[tuple[object, ...]]:
    base = url.rsplit("?", 1)[0]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema_of(url)}"')
        return conn.execute(query).fetchall()


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_processes_append_to_one_session_gapless(pg_url: str) -> None:
    code = """
        import sys, chatkeep
        from chatkeep import Message
        url, me = sys.argv[1], sys.argv[2]
        with chatkeep.open_store(url) as store:
            for i in range(40):
                key = f"{me}-{i}" if i % 4 == 0 else None
                store.append("shared", [Message.user(f"{me}-{i}")], idempotency_key=key)
                if key:  # a retried request: must not store twice
                    store.append("shared", [Message.user("dup!")], idempotency_key=key)
    """
    procs = [spawn(code, pg_url, f"w{n}") for n in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with chatkeep.open_store(pg_url) as store:
        rows = store.read("shared")
        assert [m.seq for m in rows] == list(range(1, 161))
        texts = [m.text for m in rows]
        assert "dup!" not in texts
        assert sorted(texts) == sorted(f"w{n}-{i}" for n in range(4) for i in range(40))
        # the running totals stayed exact under contention: the window's cut relies on them
        totals = sql_rows(pg_url, "SELECT seq, tokens, prefix_tokens FROM ck_messages ORDER BY seq")
        running = 0
        for _seq, tokens, prefix in totals:
            assert prefix == running
            running += int(tokens)  # type: ignore[call-overload]
        assert store.info("shared").total_tokens == running  # type: ignore[union-attr]


def test_processes_racing_to_migrate_apply_each_migration_once() -> None:
    base = server_url()
    schema = f"ck_test_{uuid.uuid4().hex[:12]}"
    url = with_schema(base, schema)
    code = """
        import sys, chatkeep
        with chatkeep.open_store(sys.argv[1]) as store:
            store.append(f"s-{sys.argv[2]}", chatkeep.Message.user("hi"))
    """
    try:
        procs = [spawn(code, url, str(n)) for n in range(5)]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err
        from chatkeep.stores.postgres_schema import SCHEMA_VERSION

        versions = sql_rows(url, "SELECT version FROM ck_migrations ORDER BY version")
        assert versions == [(v,) for v in range(1, SCHEMA_VERSION + 1)]
        assert sql_rows(url, "SELECT count(*) FROM ck_sessions") == [(5,)]
    finally:
        drop_schema(base, schema)


def test_closed_port_fails_fast_and_redacts_the_password() -> None:
    url = f"postgresql://ada:s3cret@127.0.0.1:{free_port()}/test?connect_timeout=1"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as err:
        chatkeep.open_store(url)
    assert time.monotonic() - started < 15
    assert "s3cret" not in str(err.value) and "ada:***@127.0.0.1" in str(err.value)
    assert err.value.__cause__ is not None


def _kill_store_connections(url: str) -> int:
    base = url.rsplit("?", 1)[0]
    with psycopg.connect(base, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = %s AND pid <> pg_backend_pid()",
            (schema_of(url),),
        ).fetchall()
    return len(rows)


def test_killed_connections_raise_then_the_same_store_recovers(pg_url: str) -> None:
    url = f"{pg_url}&application_name={schema_of(pg_url)}&min_size=2"
    with chatkeep.open_store(url) as store:
        store.append("s", Message.user("before"))
        assert _kill_store_connections(url) >= 1
        with pytest.raises(StoreUnavailable) as err:
            for _ in range(3):  # every pooled connection is dead; one call must say so
                store.read("s")
        assert isinstance(err.value.__cause__, psycopg.OperationalError)
        assert "127.0.0.1" in str(err.value)
        deadline = time.monotonic() + 20
        while True:  # the same object recovers once the pool reconnects
            try:
                store.append("s", Message.user("after"))
                break
            except StoreUnavailable:
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert [m.text for m in store.read("s")] == ["before", "after"]


def test_async_killed_connections_raise_then_recover(pg_url: str) -> None:
    url = f"{pg_url}&application_name={schema_of(pg_url)}&min_size=2"

    async def main() -> list[str]:
        store = await chatkeep.open_async_store(url)
        try:
            await store.append("s", Message.user("before"))
            assert _kill_store_connections(url) >= 1
            with pytest.raises(StoreUnavailable):
                for _ in range(3):
                    await store.read("s")
            deadline = time.monotonic() + 20
            while True:
                try:
                    await store.append("s", Message.user("after"))
                    break
                except StoreUnavailable:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.2)
            return [m.text for m in await store.read("s")]
        finally:
            await store.close()

    assert asyncio.run(main()) == ["before", "after"]


def test_a_blocked_append_times_out_and_writes_nothing(pg_url: str) -> None:
    url = f"{pg_url}&statement_timeout=1"
    with chatkeep.open_store(url) as store:
        store.append("s", Message.user("one"))
        base = url.split("?", 1)[0]
        with psycopg.connect(base) as locker:  # another client holds the session row
            locker.execute(
                f'SELECT 1 FROM "{schema_of(pg_url)}".ck_sessions WHERE session_id = %s FOR UPDATE',
                ("s",),
            )
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="statement_timeout"):
                store.append("s", [Message.assistant("two"), Message.user("three")])
            assert time.monotonic() - started < 10
            locker.rollback()
        assert [m.text for m in store.read("s")] == ["one"]
        assert store.info("s").total_tokens == store.read("s")[0].tokens  # type: ignore[union-attr]
        assert store.append("s", Message.assistant("two")).first_seq == 2


@pytest.mark.parametrize(
    "query",
    [
        "schema=1starts_with_digit",
        'schema=a"b',
        "schema=a;DROP%20TABLE%20x",
        "schema=" + "x" * 64,
        "schema=",
        "min_size=5&max_size=2",
        "max_size=0",
        "pool_timeout=soon",
        "statement_timeout=-1",
        "not_a_libpq_option=1",
        "schema=a&schema=b",
    ],
)
def test_bad_urls_are_rejected_before_connecting(query: str) -> None:
    with pytest.raises(InvalidURL):
        chatkeep.open_store(f"postgresql://127.0.0.1:1/test?{query}")


def test_mixed_case_schema_is_quoted_not_folded() -> None:
    base = server_url()
    schema = f"Ck_Test_{uuid.uuid4().hex[:8]}"
    try:
        with chatkeep.open_store(with_schema(base, schema)) as store:
            store.append("s", Message.user("x"))
        found = sql_rows(
            with_schema(base, schema),
            f"SELECT nspname FROM pg_namespace WHERE nspname IN ('{schema}', '{schema.lower()}')",
        )
        assert found == [(schema,)]
    finally:
        drop_schema(base, schema)


def test_postgres_scheme_alias_and_async_is_native(pg_url: str) -> None:
    alias = pg_url.replace("postgresql://", "postgres://", 1)
    with chatkeep.open_store(alias) as store:
        store.append("s", Message.user("x"))
    assert isinstance(chatkeep.stores.make_backend(alias), PostgresBackend)
    assert isinstance(chatkeep.stores.make_async_backend(alias), AsyncPostgresBackend)


def test_tokenizer_is_bound_to_the_schema(pg_url: str) -> None:
    with chatkeep.open_store(pg_url) as store:
        store.append("s", Message.user("x"))

    class Other:
        name = "other-tokenizer"

        def count(self, text: str) -> int:
            return len(text)

    with pytest.raises(TokenizerMismatch, match="other-tokenizer"):
        chatkeep.open_store(pg_url, tokenizer=Other())


def test_expiry_and_erase_really_delete_rows(pg_url: str) -> None:
    with chatkeep.open_store(pg_url) as store:
        store.append("gone", [Message.user("a"), Message.assistant("b")], idempotency_key="k")
        store.append("kept", Message.user("c"))
        store.acquire_lease("gone", owner="w", ttl=30)
        store.update_session("gone", metadata=None, expires_at=utcnow() - timedelta(seconds=1))
        assert store.info("gone") is None and store.read("gone") == []
        assert store.purge_expired() == 1
        counts = sql_rows(
            pg_url,
            "SELECT (SELECT count(*) FROM ck_messages), (SELECT count(*) FROM ck_idempotency),"
            " (SELECT count(*) FROM ck_sessions), (SELECT count(*) FROM ck_leases)",
        )
        assert counts == [(1, 0, 1, 0)]
        other = store.with_tenant("acme")
        other.append("x", Message.user("tenant data"))
        assert store.erase("acme") == 1
        assert sql_rows(pg_url, "SELECT count(*) FROM ck_sessions WHERE tenant = 'acme'") == [(0,)]
        assert [m.text for m in store.read("kept")] == ["c"]


def test_twins_expose_the_same_methods() -> None:
    def public(cls: type) -> set[str]:
        return {n for n in vars(cls) if not n.startswith("_")}

    assert public(PostgresBackend) == public(AsyncPostgresBackend)
    for name in public(AsyncPostgresBackend) - {"scheme", "ephemeral"}:
        assert inspect.iscoroutinefunction(getattr(AsyncPostgresBackend, name)), name


def test_missing_driver_names_the_extra() -> None:
    code = """
        import sys
        sys.modules["psycopg"] = None
        import chatkeep
        try:
            chatkeep.open_store("postgresql://127.0.0.1/test")
        except chatkeep.MissingDependency as exc:
            print(exc)
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert "pip install 'chatkeep[postgres]'" in out.stdout, out.stderr


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
def test_window_cut_is_an_index_lookup(pg_url: str, plan_mode: str) -> None:
    """The window reads a range found through the running totals' index (the benchmark
    measures the speed; this pins the plan shape, which no timing noise can hide)."""
    from chatkeep.stores import postgres_ops as ops

    with chatkeep.open_store(pg_url) as store:
        for _ in range(3):
            store.append("s", [Message.user("word " * 30) for _ in range(500)])
        backend: Any = store._backend
        query = backend.sql.window
        args = ops._args("default", "s", pin=True, budget=3000, reserve=0)
        base = pg_url.split("?", 1)[0]
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f"SET plan_cache_mode = {plan_mode}")
            conn.execute("SET enable_seqscan = off")  # tiny tables: judge the shape only
            plan = "\n".join(r[0] for r in conn.execute(b"EXPLAIN " + query, args, prepare=True))
    assert re.search(r"Index Cond: \(\(session_pk = \w+\.pk\) AND \(prefix_tokens >= ", plan), plan
    assert "(prefix_tokens)::numeric" not in plan and "Filter: ((prefix_tokens" not in plan, plan


def _child_appends(store: Any, text: str) -> None:
    store.append("s", Message.user(text))
    store.close()  # closes only the child's own pool


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_a_store_opened_before_fork_is_safe_in_children(pg_url: str) -> None:
    ctx = multiprocessing.get_context("fork")
    with chatkeep.open_store(f"{pg_url}&min_size=2") as store:
        store.append("s", Message.user("parent before"))
        children = [
            ctx.Process(target=_child_appends, args=(store, f"child {n}")) for n in range(2)
        ]
        for c in children:
            c.start()
        for c in children:
            c.join(60)
            assert c.exitcode == 0
        # the parent's pooled connections were not disturbed by the children
        store.append("s", Message.user("parent after"))
        texts = [m.text for m in store.read("s")]
    assert texts[0] == "parent before" and texts[-1] == "parent after"
    assert sorted(texts[1:3]) == ["child 0", "child 1"]


def test_async_twin_has_not_drifted_from_the_sync_one() -> None:
    """Every primitive is the same code in both twins once ``async``/``await`` and the Async
    class names are taken away (the logic itself lives once, in postgres_ops)."""
    import ast

    from chatkeep.stores import postgres, postgres_async
    from chatkeep.stores.base import PRIMITIVES

    def bodies(module: Any) -> dict[str, str]:
        tree = ast.parse(inspect.getsource(module))
        out = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                text = ast.unparse(node).replace("async ", "").replace("await ", "")
                out[node.name] = text.replace("AsyncConnectionPool", "ConnectionPool").replace(
                    "AsyncConnection", "Connection"
                )
        return out

    sync, asyn = bodies(postgres), bodies(postgres_async)
    for name in (*PRIMITIVES, "bind_tokenizer", "_drive", "_recheck"):
        assert sync[name] == asyn[name], name


def test_an_exhausted_pool_fails_within_pool_timeout(pg_url: str) -> None:
    with chatkeep.open_store(f"{pg_url}&max_size=1&pool_timeout=0.5") as store:
        store.append("s", Message.user("one"))
        backend: Any = store._backend
        with backend._pool.connection():  # someone holds the only connection
            started = time.monotonic()
            with pytest.raises(StoreUnavailable, match="pool_timeout"):
                store.read("s")
            assert time.monotonic() - started < 10
        assert [m.text for m in store.read("s")] == ["one"]  # and it is fine afterwards


def test_async_blocked_append_times_out_and_writes_nothing(pg_url: str) -> None:
    url = f"{pg_url}&statement_timeout=1"

    async def main() -> list[str]:
        store = await chatkeep.open_async_store(url)
        try:
            await store.append("s", Message.user("one"))
            with psycopg.connect(url.split("?", 1)[0]) as locker:
                locker.execute(
                    f'SELECT 1 FROM "{schema_of(pg_url)}".ck_sessions WHERE session_id = %s '
                    "FOR UPDATE",
                    ("s",),
                )
                with pytest.raises(StoreUnavailable, match="statement_timeout"):
                    await store.append("s", [Message.assistant("two"), Message.user("three")])
                locker.rollback()
            return [m.text for m in await store.read("s")]
        finally:
            await store.close()

    assert asyncio.run(main()) == ["one"]
