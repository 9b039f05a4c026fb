"""Private database servers and file systems for fault tests: never the shared ones.

Fault tests stop, kill and restart servers, fill disks and make them read-only. They do it to
servers and mounts of their own, in fresh temporary folders on free loopback ports, so other
tests (and other people) using the machine's PostgreSQL and Redis are never disturbed.

* :class:`RedisServer`: a ``redis-server`` with AOF fsync'd on every write.
* :class:`PostgresServer`: a fresh cluster made by ``initdb``, driven by ``pg_ctl`` (as the
  ``postgres`` user when run as root, since PostgreSQL refuses to run as root).
* :class:`Tmpfs`: a small tmpfs mount (root only) that can be filled up or remounted read-only.

Each helper raises :class:`Unavailable` when this machine cannot provide it; :func:`need`
turns that into a skip, or a failure under ``CI=true`` (CI must run the fault tests).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TypeVar

import pytest
from tests.server.helpers import free_port

T = TypeVar("T")
__all__ = ["PostgresServer", "RedisServer", "Tmpfs", "Unavailable", "free_port", "need"]


class Unavailable(Exception):
    """This machine cannot provide the server or mount asked for."""


def need(make: type[T], *args: object, **kwargs: object) -> T:
    """``make(*args, **kwargs)``, or skip the test (fail under CI=true) when unavailable."""
    try:
        return make(*args, **kwargs)
    except Unavailable as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {exc}")
        pytest.skip(str(exc))


def _wait(ready: object, what: str, seconds: float, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise AssertionError(f"{what} did not come up within {seconds:g}s; log:\n{tail}")


# -- Redis -------------------------------------------------------------------------------------


class RedisServer:
    """A redis-server of our own, with AOF fsync'd on every write (``appendfsync always``).

    ``stop("shutdown")`` is a graceful ``SHUTDOWN``; ``stop("kill")`` is SIGKILL. ``start()``
    again uses the same port and folder, so the AOF is replayed."""

    MODES = ("shutdown", "kill")

    def __init__(self, folder: Path, *extra: str) -> None:
        if not shutil.which("redis-server"):
            raise Unavailable("redis-server is not on PATH")
        self.folder = folder
        self.extra = list(extra)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.folder / "log.txt"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self._ping, "redis-server", 20, self.folder / "log.txt")

    def stop(self, mode: str = "shutdown") -> None:
        assert self.proc is not None
        if mode == "kill":
            self.proc.send_signal(signal.SIGKILL)
        elif mode == "shutdown":
            import redis

            try:
                redis.Redis(port=self.port, socket_timeout=10).shutdown()
            except redis.ConnectionError:
                pass  # the server closes the connection as it goes
        else:
            raise ValueError(f"mode {mode!r}; expected one of {self.MODES}")
        self.proc.wait(timeout=30)

    def kill(self) -> None:
        self.stop("kill")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


# -- PostgreSQL --------------------------------------------------------------------------------


def _pg_bindir() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl:
        return Path(pg_ctl).parent
    raise Unavailable("PostgreSQL server binaries (initdb, pg_ctl) are not installed")


class PostgresServer:
    """A PostgreSQL cluster of our own in a fresh folder, on a free loopback port.

    ``stop("fast")`` / ``stop("immediate")`` are ``pg_ctl stop -m fast|immediate`` (immediate
    is a crash: the next start replays the WAL); ``start()`` brings it back on the same port.
    Call :meth:`close` at the end: it stops the server and removes the folder."""

    MODES = ("fast", "immediate")

    def __init__(self) -> None:
        self.bindir = _pg_bindir()
        self.owner: list[str] = []
        uid = os.geteuid()
        if uid == 0:  # PostgreSQL refuses to run as root: run it as the postgres user
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no postgres user") from None
            if not shutil.which("runuser"):
                raise Unavailable("running as root and runuser is not installed")
            self.owner = ["runuser", "-u", "postgres", "--"]
        # not under pytest's tmp_path: its folders are private to root
        self.folder = Path(tempfile.mkdtemp(prefix="chatkeep-pg-"))
        if uid == 0:
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        self.data = self.folder / "data"
        self.log = self.folder / "log.txt"
        self.port = free_port()
        self.running = False
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self.owner, str(self.bindir / tool), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise AssertionError(f"{tool} {' '.join(args)} failed:\n{done.stderr}\n{tail}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c max_connections=60 -c shared_buffers=16MB"
        )
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                 "-t", "60", "start")  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        if mode not in self.MODES:
            raise ValueError(f"mode {mode!r}; expected one of {self.MODES}")
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def close(self) -> None:
        try:
            if self.running:
                self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


# -- a small file system -----------------------------------------------------------------------


class Tmpfs:
    """A tmpfs of ``size`` bytes mounted on a fresh folder (needs root and mount rights).

    :meth:`fill` takes every free byte (returns the filler to :meth:`free` later);
    :meth:`read_only` / :meth:`read_write` remount it. :meth:`close` unmounts and removes it."""

    def __init__(self, size: int) -> None:
        if os.geteuid() != 0 or not shutil.which("mount"):
            raise Unavailable("mounting a tmpfs needs root and mount(8)")
        self.path = Path(tempfile.mkdtemp(prefix="chatkeep-fs-"))
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            self.path.rmdir()
            raise Unavailable(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def _mount(self, *options: str) -> None:
        subprocess.run(["mount", "-o", ",".join(options), str(self.path)], check=True)

    def read_only(self) -> None:
        self._mount("remount", "ro")

    def read_write(self) -> None:
        self._mount("remount", "rw")

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> Path:
        """Write zeros until the file system is full (ENOSPC); returns the filler file."""
        filler = self.path / "filler.bin"
        chunk = b"\0" * 4096
        with open(filler, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass
            for size in (512, 64, 1):  # the last partial blocks too
                try:
                    while True:
                        f.write(chunk[:size])
                except OSError:
                    pass
        return filler

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False)
        shutil.rmtree(self.path, ignore_errors=True)
