"""PostgreSQL for tests: which server, and a fresh schema per test (dropped afterwards).

``CHATKEEP_TEST_POSTGRES_URL`` names the server. When it is unset and ``CI=true`` the local
server (``postgresql://127.0.0.1:5432/test``) is used and must be reachable: the tests fail,
never skip. Elsewhere they skip with a message saying how to enable them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pytest

LOCAL = "postgresql://127.0.0.1:5432/test"
ENABLE = f"set CHATKEEP_TEST_POSTGRES_URL={LOCAL} (or CI=true) to run the PostgreSQL tests"


@cache
def _reachable(url: str) -> str | None:
    """None when ``url`` answers, else why not."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return str(exc).strip() or type(exc).__name__
    return None


def server_url() -> str:
    """The test server's URL, or skip/fail as the module docstring says."""
    url = os.environ.get("CHATKEEP_TEST_POSTGRES_URL")
    in_ci = os.environ.get("CI", "").lower() == "true"
    if not url:
        if not in_ci:
            pytest.skip(ENABLE)
        url = LOCAL
    problem = _reachable(url)
    if problem is not None:
        pytest.fail(f"PostgreSQL at {url} is unreachable ({problem}); start it or unset CI")
    return url


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}schema={schema}"


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def fresh_postgres_url() -> Iterator[str]:
    """A store URL on its own new schema; the schema is dropped when the block ends."""
    base = server_url()
    schema = f"ck_test_{uuid.uuid4().hex[:12]}"
    try:
        yield with_schema(base, schema)
    finally:
        drop_schema(base, schema)
