"""Redis for the tests: which server, a fresh key prefix per test, and cleanup.

``CHATKEEP_TEST_REDIS_URL`` names the server. When it is unset and ``CI=true``, the tests use
redis://127.0.0.1:6379/0 and FAIL if it is down (CI must run them); anywhere else they skip
with a message saying how to enable them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

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
        pytest.fail(
            f"Redis at {url} is unreachable ({problem}); start it "
            "(redis-server --daemonize yes --port 6379, or .ci/run)"
        )
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


# -- a real Redis Cluster ----------------------------------------------------------------------


def _free_port_pair() -> int:
    """A port whose cluster bus port (+10000) is free too."""
    import socket

    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class LocalCluster:
    """Three redis-server primaries in cluster mode, in a temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0?cluster=on"

    def start(self) -> None:
        import redis

        for _ in range(3):
            port = _free_port_pair()
            node = self.folder / str(port)
            node.mkdir()
            self.procs.append(
                subprocess.Popen(
                    [
                        "redis-server",
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(node),
                        "--logfile",
                        str(node / "log.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.ports.append(port)
        for port in self.ports:
            _wait(lambda p=port: redis.Redis(port=p, socket_connect_timeout=0.5).ping())
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in self.ports:
            _wait(
                lambda p=port: (
                    redis.Redis(port=p).execute_command("CLUSTER INFO")["cluster_state"] == "ok"
                )
            )

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(timeout=10)


def _wait(check: Callable[[], object], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for the cluster: {last}")


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``$CHATKEEP_TEST_REDIS_CLUSTER_URL``, else a local 3-node cluster started for this
    session (needs redis-server and redis-cli; under CI=true their absence fails)."""
    server_url()  # the Redis tests are enabled (else this skips)
    given = os.environ.get("CHATKEEP_TEST_REDIS_CLUSTER_URL")
    if given:
        yield given
        return
    if not (shutil.which("redis-server") and shutil.which("redis-cli")):
        message = "Redis Cluster tests need redis-server and redis-cli on PATH"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    cluster = LocalCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.stop()


@cache
def _cluster_client(url: str) -> Any:
    import redis.cluster

    return redis.cluster.RedisCluster.from_url(url)


def drop_cluster_prefix(url: str, prefix: str) -> None:
    client = _cluster_client(url.split("?")[0])  # one per session: discovery is not free
    for pattern in (f"{{{prefix}:*", f"{prefix}:*"):
        keys = list(client.scan_iter(pattern))
        if keys:
            client.delete(*keys)


@contextmanager
def fresh_cluster_prefix(url: str) -> Iterator[str]:
    prefix = f"ck_test_{uuid.uuid4().hex[:12]}"
    try:
        yield with_options(url, prefix=prefix, durability_warning="off")
    finally:
        drop_cluster_prefix(url, prefix)
