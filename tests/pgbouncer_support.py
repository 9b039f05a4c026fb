"""A private PgBouncer in front of the test PostgreSQL (tests/pg_support.py).

:class:`PgBouncer` starts Debian's ``pgbouncer`` on a free loopback port with a generated ini
(``auth_type = trust``, the upstream's credentials in the ``[databases]`` entry, a small server
pool so clients really share server connections), waits until a query goes through it, and
stops it at the end. It never touches the upstream server's configuration. PgBouncer refuses
to run as root, so under root it runs as the ``postgres`` user (or ``nobody``).

Without the binary the tests skip saying how to install it; under ``CI=true`` they fail (CI
installs it: ``.ci/run``).
"""

from __future__ import annotations

import getpass
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
from psycopg.conninfo import conninfo_to_dict
from tests.server.helpers import free_port

from pg_support import drop_schema, server_url, with_schema

INSTALL = "pgbouncer is not installed (apt-get install pgbouncer)"


def unavailable(why: str) -> NoReturn:
    """Skip the test, or fail it under CI=true (CI must run the PgBouncer tests)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {why}")
    pytest.skip(f"{why}: skipping the PgBouncer tests")


def binary() -> str:
    """The pgbouncer executable (often in /usr/sbin, off a normal user's PATH)."""
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)),
        None,
    )
    if found is None:
        unavailable(INSTALL)
    return found


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class PgBouncer:
    """A pgbouncer of our own on ``127.0.0.1:<free port>`` in front of ``upstream``.

    ``url`` is the upstream URL with host and port swapped for the bouncer's (same database
    name and user, no password: the bouncer authenticates clients by trust and logs in to the
    server with the upstream's credentials). Use as a context manager or call :meth:`close`."""

    def __init__(
        self,
        upstream: str,
        *,
        pool_mode: str = "transaction",
        pool_size: int = 4,
        server: dict[str, str] | None = None,
        **settings: str | int,
    ) -> None:
        self.exe = binary()
        self.settings = settings  # more [pgbouncer] settings, e.g. query_timeout=2
        self.upstream = upstream
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        up = conninfo_to_dict(upstream)
        self.dbname = str(up.get("dbname") or getpass.getuser())
        self.user = str(up.get("user") or getpass.getuser())
        server = {
            "host": up.get("host") or "127.0.0.1",
            "port": up.get("port") or "5432",
            "dbname": self.dbname,
            "user": self.user,
            **({"password": up["password"]} if up.get("password") else {}),
            # more of the database entry's settings, e.g. connect_query, timezone
            **(server or {}),
        }
        self.db_line = " ".join(f"{k}={_quote(str(v))}" for k, v in server.items())
        self.run_as: dict[str, Any] = {}
        self.folder = Path(tempfile.mkdtemp(prefix="chatkeep-pgbouncer-"))
        if os.geteuid() == 0:  # "PgBouncer should not run as root"
            for name in ("postgres", "nobody"):
                try:
                    pw = pwd.getpwnam(name)
                except KeyError:
                    continue
                self.run_as = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
                os.chown(self.folder, pw.pw_uid, pw.pw_gid)
                break
            else:
                shutil.rmtree(self.folder)
                unavailable("running as root and there is no postgres or nobody user")
        self.log = self.folder / "pgbouncer.log"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            self.start()
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    def _write_config(self) -> Path:
        ini = self.folder / "pgbouncer.ini"
        users = self.folder / "users.txt"
        users.write_text(f'"{self.user}" ""\n')
        ini.write_text(
            "[databases]\n"
            f"{self.dbname} = {self.db_line}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            f"pool_mode = {self.pool_mode}\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 400\n"
            "server_login_retry = 1\n"
            f"logfile = {self.log}\n"
            + "".join(f"{key} = {value}\n" for key, value in self.settings.items())
        )
        for path in (ini, users):
            path.chmod(0o644)
        return ini

    def _answers(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=2, prepare_threshold=None
            ) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def start(self) -> None:
        for _ in range(3):  # a free port can be taken between choosing and binding it
            self.port = free_port()
            ini = self._write_config()
            self.proc = subprocess.Popen(
                [self.exe, str(ini)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                **self.run_as,
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.proc.poll() is None:
                if self._answers():
                    return
                time.sleep(0.05)
            self.stop()
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"
        raise AssertionError(f"pgbouncer did not come up; log:\n{tail}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # immediate shutdown
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def bouncer(pool_mode: str = "transaction", **kw: Any) -> Iterator[PgBouncer]:
    """A PgBouncer in front of the test PostgreSQL (skips like pg_support when there is none)."""
    with PgBouncer(server_url(), pool_mode=pool_mode, **kw) as b:
        yield b


@contextmanager
def fresh_bouncer_url(b: PgBouncer, options: str = "pgbouncer=true") -> Iterator[str]:
    """A store URL through ``b`` on its own new schema, dropped (on the upstream) afterwards."""
    schema = f"ck_test_{uuid.uuid4().hex[:12]}"
    url = with_schema(b.url, schema)
    try:
        yield f"{url}&{options}" if options else url
    finally:
        drop_schema(b.upstream, schema)
