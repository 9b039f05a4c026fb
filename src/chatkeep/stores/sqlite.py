"""``sqlite:///path.db``: the embedded default backend (stdlib ``sqlite3``).

* WAL journal, a busy timeout, and one ``BEGIN IMMEDIATE`` transaction per write, so several
  processes on one machine (``--workers``, a CLI next to a server) share one file safely.
* ``synchronous=FULL`` by default: an acknowledged append survives a process crash *and* a
  power loss. ``?synchronous=normal`` trades the last transactions on power loss (never on a
  process crash) for a faster commit.
* One connection per thread (``threading.local``); connections inherited across ``fork()`` are
  dropped, never reused.
* Windows are served from stored running token totals: one index lookup finds the cut, so the
  cost depends on the window, not on the history length.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from chatkeep.errors import (
    ChatkeepError,
    InvalidURL,
    StoreFull,
    StoreUnavailable,
    TokenizerMismatch,
)
from chatkeep.policies.window import PINNED_ROLES, select_window, tail_budget
from chatkeep.stores import sqlite_append
from chatkeep.stores._common import (
    check_expected,
    check_summary_args,
    decode_cursor,
    decode_row,
    encode_cursor,
    new_id,
    parse_ts,
    payload_or_row,
    rewrite_conflict,
    stored,
    summary_of,
    ts,
)
from chatkeep.stores.base import UNSET, NewRow, Rewrite, _Unset
from chatkeep.stores.sqlite_append import INSERT_SQL as _INSERT_SQL
from chatkeep.stores.sqlite_schema import apply_migrations
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
    utcnow,
)

T = TypeVar("T")

_SYNC_LEVELS = {"full": "FULL", "normal": "NORMAL", "extra": "EXTRA", "off": "OFF"}
_CHECKPOINT_WAIT_MS = 250  # how long erase/purge wait to truncate the WAL
_MSG_COLS = "seq, role, tokens, id, created_at, body"
_SESSION_COLS = (
    "pk, session_id, created_at, updated_at, message_count, last_seq, total_tokens, metadata, "
    "expires_at, summary_seq, summary, summary_tokens, summary_at, last_user_seq"
)


MIN_SQLITE = (3, 24, 0)  # upsert (ON CONFLICT DO UPDATE)


# An uncorrelated scalar subquery (one index lookup) finds where the budget cut falls; the tail
# starts there or earlier at the latest user message (?5); the outer query is one primary-key
# range read.
_TAIL_SQL = f"""
SELECT {_MSG_COLS} FROM ck_messages
WHERE session_pk = ?1 AND seq >= max(?3 + 1, min(
    coalesce((SELECT seq FROM ck_messages WHERE session_pk = ?1 AND prefix_tokens >= ?2
              ORDER BY prefix_tokens LIMIT 1), ?4),
    coalesce(?5, ?4)))
ORDER BY seq
"""


def _prefix_upper(prefix: str) -> str | None:
    last = ord(prefix[-1])
    return None if last >= 0x10FFFF else prefix[:-1] + chr(last + 1)


# result codes (the sqlite3 module exports them from Python 3.11.4 only)
_SQLITE_FULL, _SQLITE_READONLY, _SQLITE_CANTOPEN = 13, 8, 14


def _read_only(path: Path) -> bool:
    """The database's folder cannot be written (WAL needs its -wal and -shm files there)."""
    folder = path.parent if str(path.parent) else Path(".")
    return not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK))


def unavailable(path: Path, exc: sqlite3.Error, what: str = "SQLite error on") -> StoreUnavailable:
    """The chatkeep error for an SQLite failure: :class:`StoreFull` when the disk is full (the
    transaction was rolled back, so nothing of it was stored), a message saying so when the
    file or its folder is read-only, else :class:`StoreUnavailable`."""
    code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
    if code == _SQLITE_FULL:
        return StoreFull(
            f"SQLite database {path}: the disk is full ({exc}); nothing of this write was "
            "stored; free some space and retry"
        )
    if code == _SQLITE_READONLY or (code == _SQLITE_CANTOPEN and _read_only(path)):
        return StoreUnavailable(
            f"SQLite database {path} is read-only ({exc}): the file, its folder or the file "
            "system is read-only, and a WAL database needs to write its -wal and -shm files "
            "next to it; nothing was written"
        )
    return StoreUnavailable(f"{what} {path}: {exc}")


class SQLiteBackend:
    scheme = "sqlite"
    ephemeral = False

    def __init__(
        self, path: str | os.PathLike[str], *, synchronous: str = "full", timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        if str(path) in ("", ":memory:"):
            raise InvalidURL("sqlite needs a file path; use memory:// for an in-process store")
        level = _SYNC_LEVELS.get(synchronous.lower())
        if level is None:
            raise InvalidURL(
                f"synchronous={synchronous!r}; expected one of {', '.join(_SYNC_LEVELS)}"
            )
        self.synchronous = level
        self.timeout = timeout
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._pid = os.getpid()

    # -- connections -------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # deleted rows are overwritten, not left in free pages (erase, retention, rekey)
            conn.execute("PRAGMA secure_delete = ON")
        except sqlite3.Error as exc:
            raise unavailable(self.path, exc, "cannot open SQLite database") from exc
        with self._conns_lock:
            self._conns.append(conn)
        return conn

    @property
    def _conn(self) -> sqlite3.Connection:
        if os.getpid() != self._pid:  # forked: never touch the parent's connections
            self._pid = os.getpid()
            self._local = threading.local()
            with self._conns_lock:
                self._conns = []
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return fn(self._conn)
        except ChatkeepError:
            raise
        except sqlite3.Error as exc:
            raise unavailable(self.path, exc) from exc

    def _transact(self, fn: Callable[[sqlite3.Connection], T], begin: str) -> T:
        # one transaction, with driver errors translated; written out rather than built from
        # helpers because every append and read comes through here
        try:
            conn = self._conn
            conn.execute(begin)
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result
        except ChatkeepError:
            raise
        except sqlite3.Error as exc:
            raise unavailable(self.path, exc) from exc

    def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._transact(fn, "BEGIN IMMEDIATE")

    def _snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._transact(fn, "BEGIN")

    def open(self) -> None:
        def go(conn: sqlite3.Connection) -> None:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreUnavailable(f"{self.path}: cannot switch to WAL (got {mode!r})")
            apply_migrations(conn)

        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StoreUnavailable(
                f"chatkeep needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this Python "
                f"links {sqlite3.sqlite_version}"
            )
        if self.path.parent and not self.path.parent.exists():
            raise StoreUnavailable(f"directory {self.path.parent} does not exist")
        # Several processes opening a new file at once (``--workers``, spawned writers) race
        # to switch it to WAL; SQLite answers the loser "database is locked" at once, without
        # waiting on the busy timeout (it would deadlock otherwise). Both steps are
        # idempotent, so retry until the busy timeout runs out.
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self._run(go)
                return
            except StoreUnavailable as exc:
                cause = exc.__cause__
                locked = isinstance(cause, sqlite3.OperationalError) and "locked" in str(cause)
                if not locked or time.monotonic() >= deadline:
                    raise
            time.sleep(0.005 + 0.02 * (os.getpid() % 7) / 7)

    def close(self) -> None:
        with self._conns_lock:
            conns, self._conns = self._conns, []
        self._local = threading.local()
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # closing is best effort; the OS reclaims the handle
                pass

    def bind_tokenizer(self, name: str) -> None:
        def go(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT value FROM ck_meta WHERE key = 'tokenizer'").fetchone()
            if row is None:
                conn.execute("INSERT INTO ck_meta (key, value) VALUES ('tokenizer', ?)", (name,))
            elif row[0] != name:
                raise TokenizerMismatch(
                    f"{self.path} holds token counts made by {row[0]!r}, not {name!r}; open it "
                    f"with tokenizer={row[0]!r} or use another file"
                )

        self._write(go)

    # -- helpers -----------------------------------------------------------------------------
    def _session(self, conn: sqlite3.Connection, tenant: str, session_id: str) -> Any:
        row = conn.execute(
            f"SELECT {_SESSION_COLS} FROM ck_sessions WHERE tenant = ? AND session_id = ?",
            (tenant, session_id),
        ).fetchone()
        if row is not None and row[8] is not None and parse_ts(row[8]) <= utcnow():
            return None  # expired: gone for readers; the next write or purge deletes it
        return row

    @staticmethod
    def _drop(conn: sqlite3.Connection, pk: int) -> None:
        conn.execute("DELETE FROM ck_messages WHERE session_pk = ?", (pk,))
        conn.execute("DELETE FROM ck_idempotency WHERE session_pk = ?", (pk,))
        conn.execute("DELETE FROM ck_sessions WHERE pk = ?", (pk,))

    def _session_for_write(
        self, conn: sqlite3.Connection, tenant: str, session_id: str, now: str | None = None
    ) -> Any:
        row = conn.execute(
            f"SELECT {_SESSION_COLS} FROM ck_sessions WHERE tenant = ? AND session_id = ?",
            (tenant, session_id),
        ).fetchone()
        if row is not None and row[8] is not None and parse_ts(row[8]) <= utcnow():
            self._drop(conn, row[0])
            row = None
        if row is None:
            now = now or ts(utcnow())
            conn.execute(
                "INSERT INTO ck_sessions (tenant, session_id, created_at, updated_at) "
                "VALUES (?, ?, ?, ?)",
                (tenant, session_id, now, now),
            )
            row = conn.execute(
                f"SELECT {_SESSION_COLS} FROM ck_sessions WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
        return row

    @staticmethod
    def _info(tenant: str, row: Any) -> SessionInfo:
        return SessionInfo(
            tenant=tenant,
            session_id=row[1],
            created_at=parse_ts(row[2]),
            updated_at=parse_ts(row[3]),
            message_count=row[4],
            last_seq=row[5],
            total_tokens=row[6],
            metadata=json.loads(row[7]),
            expires_at=parse_ts(row[8]) if row[8] else None,
            summary_through_seq=row[9],
        )

    @staticmethod
    def _rows(session_id: str, rows: Iterable[Any]) -> list[StoredMessage]:
        # decoded as the cursor yields them: no list of row tuples kept alive meanwhile
        return [decode_row(session_id, *r) for r in rows]

    # -- primitives --------------------------------------------------------------------------
    def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult:
        return sqlite_append.append(
            self, tenant, session_id, rows, idempotency_key, expect_last_seq
        )

    def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        def decode(cur: Iterable[Any]) -> list[StoredMessage]:
            return self._rows(session_id, cur)

        return self._read(tenant, session_id, after_seq, limit, newest, decode)

    def read_payloads(
        self,
        tenant: str,
        session_id: str,
        fmt: str,
        *,
        after_seq: int,
        limit: int | None,
        newest: bool,
    ) -> list[JSONObject | StoredMessage]:
        """``read``, with the payload alone of each message stored with format ``fmt``."""

        def decode(cur: Iterable[Any]) -> list[JSONObject | StoredMessage]:
            return [payload_or_row(session_id, fmt, *r) for r in cur]

        return self._read(tenant, session_id, after_seq, limit, newest, decode)

    def _read(
        self,
        tenant: str,
        session_id: str,
        after_seq: int,
        limit: int | None,
        newest: bool,
        decode: Callable[[Iterable[Any]], list[T]],
    ) -> list[T]:
        def go(conn: sqlite3.Connection) -> list[T]:
            s = self._session(conn, tenant, session_id)
            if s is None:
                return []
            order = "DESC" if newest else "ASC"
            sql = (
                f"SELECT {_MSG_COLS} FROM ck_messages WHERE session_pk = ? AND seq > ? "
                f"ORDER BY seq {order}"
            )
            args: tuple[Any, ...] = (s[0], after_seq)
            if limit is not None:
                sql += " LIMIT ?"
                args += (limit,)
            rows = decode(conn.execute(sql, args))  # decoded as the cursor yields them
            return rows[::-1] if newest else rows

        return self._snapshot(go)

    def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        def go(conn: sqlite3.Connection) -> Window:
            s = self._session(conn, tenant, session_id)
            if s is None:
                return select_window(
                    budget=budget,
                    system=(),
                    summary=None,
                    tail=(),
                    total_count=0,
                    last_seq=0,
                    reserve=reserve,
                )
            pk, count, total, covered = s[0], s[4], s[6], s[9]
            summary = self._summary(s)
            system: list[StoredMessage] = []
            if pin_system:
                system = self._rows(
                    session_id,
                    conn.execute(
                        f"SELECT {_MSG_COLS} FROM ck_messages INDEXED BY ck_messages_pinned "
                        "WHERE session_pk = ? AND role IN ('developer', 'system') ORDER BY seq",
                        (pk,),
                    ).fetchall(),
                )
            avail = tail_budget(budget, system=system, summary=summary, reserve=reserve)
            # Any message that could fit has fewer than avail + (all pinned tokens) tokens
            # from it to the end, so its prefix total is at least this bound. The tail starts
            # at the first such message, or earlier at the latest user message.
            bound = total - max(avail, 0) - sum(m.tokens for m in system)
            user = s[13] if s[13] > covered else None
            rows = self._rows(
                session_id, conn.execute(_TAIL_SQL, (pk, bound, covered, s[5] + 1, user)).fetchall()
            )
            tail = [m for m in rows if not (pin_system and m.role in PINNED_ROLES)]
            return select_window(
                budget=budget,
                system=system,
                summary=summary,
                tail=tail,
                total_count=count,
                last_seq=s[5],
                reserve=reserve,
            )

        return self._snapshot(go)

    @staticmethod
    def _summary(row: Any) -> Summary | None:
        """The summary held in a session row (``_SESSION_COLS``), if any."""
        if row[10] is None:
            return None
        return summary_of(row[10], row[9], row[11], parse_ts(row[12]))

    def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        def go(conn: sqlite3.Connection) -> StoredMessage | None:
            s = self._session(conn, tenant, session_id)
            if s is None or s[5] == 0:
                return None
            pk, last = s[0], s[5]
            row = conn.execute(
                f"SELECT {_MSG_COLS} FROM ck_messages WHERE session_pk = ? AND seq = ?",
                (pk, last),
            ).fetchone()
            msg = self._rows(session_id, [row])[0]
            conn.execute("DELETE FROM ck_messages WHERE session_pk = ? AND seq = ?", (pk, last))
            conn.execute(
                "DELETE FROM ck_idempotency WHERE session_pk = ? AND last_seq >= ?", (pk, last)
            )
            conn.execute(
                "UPDATE ck_sessions SET last_seq = last_seq - 1, message_count = message_count - 1,"
                " total_tokens = total_tokens - ?, updated_at = ?,"
                " summary = CASE WHEN summary_seq >= ? THEN NULL ELSE summary END,"
                " summary_seq = CASE WHEN summary_seq >= ? THEN 0 ELSE summary_seq END"
                " WHERE pk = ?",
                (msg.tokens, ts(utcnow()), last, last, pk),
            )
            if s[13] == last:  # the latest user message went: find the one before it
                conn.execute(
                    "UPDATE ck_sessions SET last_user_seq = (SELECT coalesce(max(seq), 0) "
                    "FROM ck_messages WHERE session_pk = ?1 AND role = 'user') WHERE pk = ?1",
                    (pk,),
                )
            return msg

        return self._write(go)

    def clear(self, tenant: str, session_id: str) -> int:
        def go(conn: sqlite3.Connection) -> int:
            s = self._session(conn, tenant, session_id)
            if s is None:
                return 0
            pk = s[0]
            conn.execute("DELETE FROM ck_messages WHERE session_pk = ?", (pk,))
            conn.execute("DELETE FROM ck_idempotency WHERE session_pk = ?", (pk,))
            conn.execute(
                "UPDATE ck_sessions SET last_seq = 0, message_count = 0, total_tokens = 0, "
                "summary = NULL, summary_seq = 0, summary_tokens = 0, summary_at = NULL, "
                "last_user_seq = 0, updated_at = ? WHERE pk = ?",
                (ts(utcnow()), pk),
            )
            return int(s[4])

        return self._write(go)

    def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult:
        n = len(rows)
        last_user = next(
            (n - i for i, r in enumerate(reversed(rows)) if r.message.role == "user"), 0
        )

        def go(conn: sqlite3.Connection) -> AppendResult:
            # One BEGIN IMMEDIATE transaction: readers see the old list or the new one.
            now = ts(utcnow())
            s = self._session_for_write(conn, tenant, session_id, now)
            check_expected(session_id, expect_last_seq, s[5])
            pk = s[0]
            conn.execute("DELETE FROM ck_messages WHERE session_pk = ?", (pk,))
            conn.execute("DELETE FROM ck_idempotency WHERE session_pk = ?", (pk,))
            params = []
            ids = []
            total = 0
            for i, r in enumerate(rows):
                ids.append(r.msg_id or new_id())
                params.append(
                    (
                        pk,
                        1 + i,
                        ids[-1],
                        r.message.role,
                        r.tokens,
                        total,
                        ts(r.message.created_at),
                        r.body.decode(),
                    )
                )
                total += r.tokens
            if n == 1:
                conn.execute(_INSERT_SQL, params[0])
            else:
                conn.executemany(_INSERT_SQL, params)
            conn.execute(
                "UPDATE ck_sessions SET last_seq = ?, message_count = ?, total_tokens = ?, "
                "summary = NULL, summary_seq = 0, summary_tokens = 0, summary_at = NULL, "
                "last_user_seq = ?, updated_at = ? WHERE pk = ?",
                (n, n, total, last_user, now, pk),
            )
            done = tuple(
                stored(r.message, session_id=session_id, seq=1 + i, tokens=r.tokens, msg_id=ids[i])
                for i, r in enumerate(rows)
            )
            return AppendResult(session_id, 1, n, done)

        return self._write(go)

    def delete(self, tenant: str, session_id: str) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT pk FROM ck_sessions WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            conn.execute(
                "DELETE FROM ck_leases WHERE tenant = ? AND session_id = ?", (tenant, session_id)
            )
            if row is None:
                return False
            self._drop(conn, row[0])
            return True

        return self._write(go)

    def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        after = decode_cursor(cursor)

        def go(conn: sqlite3.Connection) -> SessionPage:
            sql = f"SELECT {_SESSION_COLS} FROM ck_sessions WHERE tenant = ?"
            args: list[Any] = [tenant]
            if after is not None:
                sql += " AND session_id > ?"
                args.append(after)
            if prefix:
                sql += " AND session_id >= ?"
                args.append(prefix)
                upper = _prefix_upper(prefix)
                if upper is not None:
                    sql += " AND session_id < ?"
                    args.append(upper)
                else:
                    sql += " AND substr(session_id, 1, ?) = ?"
                    args += [len(prefix), prefix]
            sql += " AND (expires_at IS NULL OR expires_at > ?) ORDER BY session_id LIMIT ?"
            args += [ts(utcnow()), limit + 1]
            rows = conn.execute(sql, args).fetchall()
            items = tuple(self._info(tenant, r) for r in rows[:limit])
            nxt = encode_cursor(rows[limit - 1][1]) if len(rows) > limit else None
            return SessionPage(items, nxt)

        return self._snapshot(go)

    def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        def go(conn: sqlite3.Connection) -> SessionInfo | None:
            s = self._session(conn, tenant, session_id)
            return None if s is None else self._info(tenant, s)

        return self._snapshot(go)

    def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        def go(conn: sqlite3.Connection) -> SessionInfo:
            s = self._session_for_write(conn, tenant, session_id)
            if metadata is not None:
                conn.execute(
                    "UPDATE ck_sessions SET metadata = ? WHERE pk = ?",
                    (json.dumps(metadata, ensure_ascii=False), s[0]),
                )
            if not isinstance(expires_at, _Unset):
                conn.execute(
                    "UPDATE ck_sessions SET expires_at = ? WHERE pk = ?",
                    (ts(expires_at) if expires_at else None, s[0]),
                )
            conn.execute("UPDATE ck_sessions SET updated_at = ? WHERE pk = ?", (ts(utcnow()), s[0]))
            row = conn.execute(
                f"SELECT {_SESSION_COLS} FROM ck_sessions WHERE pk = ?", (s[0],)
            ).fetchone()
            return self._info(tenant, row)

        return self._write(go)

    def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        def go(conn: sqlite3.Connection) -> Summary | None:
            s = self._session(conn, tenant, session_id)
            return None if s is None else self._summary(s)

        return self._snapshot(go)

    def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        def go(conn: sqlite3.Connection) -> Summary:
            s = self._session(conn, tenant, session_id)
            check_summary_args(session_id, covers_through_seq, s[5] if s else 0)
            s = self._session_for_write(conn, tenant, session_id)
            now = utcnow()
            conn.execute(
                "UPDATE ck_sessions SET summary = ?, summary_seq = ?, summary_tokens = ?, "
                "summary_at = ?, updated_at = ? WHERE pk = ?",
                (text, covers_through_seq, tokens, ts(now), ts(now), s[0]),
            )
            return summary_of(text, covers_through_seq, tokens, now)

        return self._write(go)

    def purge_expired(self, now: datetime) -> int:
        def go(conn: sqlite3.Connection) -> int:
            dead = conn.execute(
                "SELECT pk, tenant, session_id FROM ck_sessions "
                "WHERE expires_at IS NOT NULL AND expires_at <= ?",
                (ts(now),),
            ).fetchall()
            for pk, tenant, session_id in dead:
                self._drop(conn, pk)
                conn.execute(
                    "DELETE FROM ck_leases WHERE tenant = ? AND session_id = ?",
                    (tenant, session_id),
                )
            return len(dead)

        purged = self._write(go)
        if purged:
            self._truncate_wal()
        return purged

    def _truncate_wal(self) -> None:
        """After deleting on purpose (erase, retention), checkpoint and truncate the WAL so
        the old page images leave the -wal file too. Best effort: it waits at most
        ``_CHECKPOINT_WAIT_MS`` for other connections, and a reader that holds an older
        snapshot keeps the WAL until the next checkpoint."""

        def go(conn: sqlite3.Connection) -> None:
            conn.execute(f"PRAGMA busy_timeout = {_CHECKPOINT_WAIT_MS}")  # never stall writes
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

        self._run(go)

    def erase(self, tenant: str) -> int:
        def go(conn: sqlite3.Connection) -> int:
            pks = [
                r[0]
                for r in conn.execute(
                    "SELECT pk FROM ck_sessions WHERE tenant = ?", (tenant,)
                ).fetchall()
            ]
            for pk in pks:
                self._drop(conn, pk)
            conn.execute("DELETE FROM ck_leases WHERE tenant = ?", (tenant,))
            return len(pks)

        erased = self._write(go)
        self._truncate_wal()
        return erased

    def acquire_lease(self, tenant: str, session_id: str, owner: str, ttl: float) -> Lease | None:
        def go(conn: sqlite3.Connection) -> Lease | None:
            now = time.time()
            row = conn.execute(
                "SELECT owner, token, expires FROM ck_leases WHERE tenant = ? AND session_id = ?",
                (tenant, session_id),
            ).fetchone()
            if row is not None and row[2] > now and row[0] != owner:
                return None
            token = (row[1] if row else 0) + 1
            conn.execute(
                "INSERT INTO ck_leases (tenant, session_id, owner, token, expires) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant, session_id) DO UPDATE SET "
                "owner = excluded.owner, token = excluded.token, expires = excluded.expires",
                (tenant, session_id, owner, token, now + ttl),
            )
            return Lease(session_id, owner, token, now + ttl)

        return self._write(go)

    def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        def go(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE ck_leases SET expires = 0 WHERE tenant = ? AND session_id = ? "
                "AND token = ? AND expires > 0",
                (tenant, session_id, token),
            )
            return cur.rowcount > 0

        return self._write(go)

    def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        def go(conn: sqlite3.Connection) -> None:
            s = self._session(conn, tenant, session_id)
            for seq, msg_id, body in rows:
                cur = conn.execute(
                    "UPDATE ck_messages SET body = ? WHERE session_pk = ? AND seq = ? AND id = ?",
                    (body.decode(), s[0] if s else None, seq, msg_id),
                )
                if cur.rowcount != 1:  # the transaction rolls back: nothing is rewritten
                    raise rewrite_conflict(session_id, seq)

        self._write(go)

    def tenants(self) -> list[str]:
        def go(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT DISTINCT tenant FROM ck_sessions ORDER BY tenant")
            return [r[0] for r in rows]

        return self._snapshot(go)
