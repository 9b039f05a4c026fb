"""Redis for the tests: which server, a fresh key prefix per test, and cleanup.

``CHATKEEP_TEST_REDIS_URL`` names the server. When it is unset and ``CI=true``, the tests use
redis://127.0.0.1:6379/0 and FAIL if it is down (CI must run them); anywhere else they skip
with a message saying how to enable them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import pytest

CI_DEFAULT = "redis://127.0.0.1:6379/0"
HOW = (
    "Redis tests are off: set CHATKEEP_TEST_REDIS_URL=redis://127.0.0.1:6379/0 (or run with "
    "CI=true) to run them against a real server"
)


def server_url() -> str:
    """The test server's URL; skips (or fails under CI) when there is none."""
    url = os.environ.get("CHATKEEP_TEST_REDIS_URL")
    if not url:
        if os.environ.get("CI") != "true":
            pytest.skip(HOW)
        url = CI_DEFAULT
    problem = _unreachable(url)
    if problem:
        pytest.fail(f"Redis at {url} is unreachable ({problem}); start it (see DEVELOPERS.md)")
    return url


@cache
def _unreachable(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as exc:
        return str(exc)
    return None


def with_options(url: str, **options: str) -> str:
    sep = "&" if "?" in url else "?"
    return url + sep + "&".join(f"{k}={v}" for k, v in options.items())


def drop_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix``; returns how many there were."""
    import redis

    client = redis.Redis.from_url(url.split("?")[0])
    try:
        keys = [
            k for pattern in (f"{{{prefix}:*", f"{prefix}:*") for k in client.scan_iter(pattern)
        ]
        if keys:
            client.delete(*keys)
        return len(keys)
    finally:
        client.close()


@contextmanager
def fresh_prefix(url: str) -> Iterator[tuple[str, str]]:
    """(store URL on a fresh prefix with the durability warning off, the prefix); the
    prefix's keys are deleted afterwards."""
    prefix = f"ck_test_{uuid.uuid4().hex[:12]}"
    try:
        yield with_options(url, prefix=prefix, durability_warning="off"), prefix
    finally:
        drop_prefix(url, prefix)
