"""The SQLite append: one ``BEGIN IMMEDIATE`` transaction that claims seqs on the session row
and inserts the messages.

Kept apart from :mod:`chatkeep.stores.sqlite` because it is the hottest write path: the
common case (one message, no idempotency key) has its own short path that runs four
statements (``BEGIN IMMEDIATE``, the claim, the insert, ``COMMIT``) and builds the result
outside the transaction, so the write lock is held only while SQLite works.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from chatkeep.stores._common import check_expected, decode_row, new_id, stored, ts
from chatkeep.stores.base import NewRow
from chatkeep.types import AppendResult, stored_from_message, utcnow

if TYPE_CHECKING:
    from chatkeep.stores.sqlite import SQLiteBackend

HAS_RETURNING = sqlite3.sqlite_version_info >= (3, 35, 0)
MSG_COLS = "seq, role, tokens, id, created_at, body"

CLAIM_SQL = """
UPDATE ck_sessions
SET last_seq = last_seq + ?, message_count = message_count + ?, total_tokens = total_tokens + ?,
    updated_at = ?, last_user_seq = CASE WHEN ? > 0 THEN last_seq + ? ELSE last_user_seq END
WHERE tenant = ? AND session_id = ? AND (expires_at IS NULL OR expires_at > ?)
RETURNING pk, last_seq, total_tokens
"""

# The claim of one message: the same update with the batch size fixed at one.
_CLAIM_ONE_SQL = """
UPDATE ck_sessions
SET last_seq = last_seq + 1, message_count = message_count + 1, total_tokens = total_tokens + ?1,
    updated_at = ?2, last_user_seq = CASE WHEN ?3 THEN last_seq + 1 ELSE last_user_seq END
WHERE tenant = ?4 AND session_id = ?5 AND (expires_at IS NULL OR expires_at > ?2)
RETURNING pk, last_seq, total_tokens
"""

INSERT_SQL = (
    "INSERT INTO ck_messages (session_pk, seq, id, role, tokens, prefix_tokens, created_at, body) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Replay(Exception):
    """Raised inside an append transaction to roll it back and return an earlier result."""

    def __init__(self, result: AppendResult) -> None:
        self.result = result


def append(
    backend: SQLiteBackend,
    tenant: str,
    session_id: str,
    rows: list[NewRow],
    idempotency_key: str | None,
    expect_last_seq: int | None,
) -> AppendResult:
    if len(rows) == 1 and idempotency_key is None and HAS_RETURNING:
        return _append_one(backend, tenant, session_id, rows[0], expect_last_seq)
    try:
        return backend._write(
            lambda conn: _append_many(
                backend, conn, tenant, session_id, rows, idempotency_key, expect_last_seq
            )
        )
    except _Replay as replay:
        return replay.result


def _append_one(
    backend: SQLiteBackend,
    tenant: str,
    session_id: str,
    row: NewRow,
    expect_last_seq: int | None,
) -> AppendResult:
    """One message, no idempotency key: everything that needs no database is done before the
    transaction (id, encoded row) or after it (the returned message)."""
    message, body, tokens, given_id = row
    role = message.role
    msg_id = given_id or new_id()
    created = ts(message.created_at)
    text = body.decode()

    def go(conn: sqlite3.Connection) -> int:
        now = ts(utcnow())
        args = (tokens, now, role == "user", tenant, session_id)
        claimed = conn.execute(_CLAIM_ONE_SQL, args).fetchone()
        if claimed is None:  # a new (or expired) session
            backend._session_for_write(conn, tenant, session_id, now)
            claimed = conn.execute(_CLAIM_ONE_SQL, args).fetchone()
        pk, seq, total = claimed
        check_expected(session_id, expect_last_seq, seq - 1)
        conn.execute(INSERT_SQL, (pk, seq, msg_id, role, tokens, total - tokens, created, text))
        return int(seq)

    seq = backend._write(go)
    done = stored_from_message(message, session_id, seq, tokens, msg_id)
    return AppendResult(session_id, seq, seq, (done,))


def _append_many(
    backend: SQLiteBackend,
    conn: sqlite3.Connection,
    tenant: str,
    session_id: str,
    rows: list[NewRow],
    idempotency_key: str | None,
    expect_last_seq: int | None,
) -> AppendResult:
    n = len(rows)
    added = sum(r.tokens for r in rows)
    last_user = next((n - i for i, r in enumerate(reversed(rows)) if r.message.role == "user"), 0)

    def claim(now: str) -> Any:
        # Move the session's counters and return them (the transaction is rolled back if a
        # check below fails): one UPDATE ... RETURNING where SQLite has it (3.35+).
        args = (n, n, added, now, last_user, last_user, tenant, session_id, now)
        if HAS_RETURNING:
            return conn.execute(CLAIM_SQL, args).fetchone()
        row = conn.execute(
            "SELECT pk, last_seq, total_tokens FROM ck_sessions WHERE tenant = ? AND "
            "session_id = ? AND (expires_at IS NULL OR expires_at > ?)",
            (tenant, session_id, now),
        ).fetchone()
        if row is not None:
            conn.execute(CLAIM_SQL.split("RETURNING")[0], args)
            row = (row[0], row[1] + n, row[2] + added)
        return row

    now = ts(utcnow())
    row = claim(now)
    if row is None:  # a new (or expired) session
        backend._session_for_write(conn, tenant, session_id, now)
        row = claim(now)
    pk, new_last, new_total = row
    last_seq, total = new_last - n, new_total - added
    if idempotency_key is not None:
        seen = conn.execute(
            "SELECT first_seq, last_seq FROM ck_idempotency WHERE session_pk = ? AND key = ?",
            (pk, idempotency_key),
        ).fetchone()
        if seen is not None:
            old = conn.execute(
                f"SELECT {MSG_COLS} FROM ck_messages WHERE session_pk = ? "
                "AND seq BETWEEN ? AND ? ORDER BY seq",
                (pk, seen[0], seen[1]),
            )
            msgs = tuple(decode_row(session_id, *r) for r in old)
            raise _Replay(AppendResult(session_id, seen[0], seen[1], msgs, replayed=True))
    check_expected(session_id, expect_last_seq, last_seq)
    params = []
    ids = []
    for i, r in enumerate(rows):
        msg_id = r.msg_id or new_id()
        ids.append(msg_id)
        params.append(
            (
                pk,
                last_seq + 1 + i,
                msg_id,
                r.message.role,
                r.tokens,
                total,
                ts(r.message.created_at),
                r.body.decode(),
            )
        )
        total += r.tokens
    if n == 1:
        conn.execute(INSERT_SQL, params[0])
    else:
        conn.executemany(INSERT_SQL, params)
    if idempotency_key is not None:
        conn.execute(
            "INSERT INTO ck_idempotency (session_pk, key, first_seq, last_seq) VALUES (?, ?, ?, ?)",
            (pk, idempotency_key, last_seq + 1, new_last),
        )
    done = tuple(
        stored(r.message, session_id=session_id, seq=last_seq + 1 + i, tokens=r.tokens, msg_id=m)
        for i, (r, m) in enumerate(zip(rows, ids, strict=True))
    )
    return AppendResult(session_id, last_seq + 1, new_last, done)
