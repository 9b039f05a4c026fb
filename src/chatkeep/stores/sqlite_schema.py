"""SQLite schema: versioned, append-only migrations and the SQL the backend runs.

A migration is never edited once released; a change is a new entry at the end of
``MIGRATIONS``. ``apply_migrations`` runs the missing ones inside one ``BEGIN IMMEDIATE``
transaction, so several processes opening the same file at once apply each exactly once.
"""

from __future__ import annotations

import sqlite3

from chatkeep.errors import StoreUnavailable
from chatkeep.types import utcnow

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "sessions, messages with running token totals, idempotency keys, leases",
        (
            """CREATE TABLE ck_meta (
                key   TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) WITHOUT ROWID""",
            """CREATE TABLE ck_sessions (
                pk             INTEGER PRIMARY KEY,
                tenant         TEXT NOT NULL,
                session_id     TEXT NOT NULL,
                created_at     TEXT NOT NULL,
                updated_at     TEXT NOT NULL,
                last_seq       INTEGER NOT NULL DEFAULT 0,
                message_count  INTEGER NOT NULL DEFAULT 0,
                total_tokens   INTEGER NOT NULL DEFAULT 0,
                metadata       TEXT NOT NULL DEFAULT '{}',
                expires_at     TEXT,
                summary        TEXT,
                summary_seq    INTEGER NOT NULL DEFAULT 0,
                summary_tokens INTEGER NOT NULL DEFAULT 0,
                summary_at     TEXT,
                last_user_seq  INTEGER NOT NULL DEFAULT 0,
                UNIQUE (tenant, session_id)
            )""",
            "CREATE INDEX ck_sessions_expiry ON ck_sessions (expires_at) "
            "WHERE expires_at IS NOT NULL",
            # prefix_tokens = tokens of every earlier message of the session: the window's
            # cut is one index lookup on (session_pk, prefix_tokens).
            """CREATE TABLE ck_messages (
                session_pk    INTEGER NOT NULL,
                seq           INTEGER NOT NULL,
                id            TEXT NOT NULL,
                role          TEXT NOT NULL,
                tokens        INTEGER NOT NULL,
                prefix_tokens INTEGER NOT NULL,
                created_at    TEXT NOT NULL,
                body          TEXT NOT NULL,
                PRIMARY KEY (session_pk, seq)
            ) WITHOUT ROWID""",
            "CREATE INDEX ck_messages_prefix ON ck_messages (session_pk, prefix_tokens)",
            # Only pinned (system/developer) rows enter this index, so ordinary appends do
            # not pay for it; the latest user message's seq is kept on the session row.
            "CREATE INDEX ck_messages_pinned ON ck_messages (session_pk, seq) "
            "WHERE role IN ('developer', 'system')",
            """CREATE TABLE ck_idempotency (
                session_pk INTEGER NOT NULL,
                key        TEXT NOT NULL,
                first_seq  INTEGER NOT NULL,
                last_seq   INTEGER NOT NULL,
                PRIMARY KEY (session_pk, key)
            ) WITHOUT ROWID""",
            """CREATE TABLE ck_leases (
                tenant     TEXT NOT NULL,
                session_id TEXT NOT NULL,
                owner      TEXT NOT NULL,
                token      INTEGER NOT NULL,
                expires    REAL NOT NULL,
                PRIMARY KEY (tenant, session_id)
            ) WITHOUT ROWID""",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]


def apply_migrations(conn: sqlite3.Connection) -> int:
    """Bring the database to ``SCHEMA_VERSION``; return the version it was at before."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ck_migrations ("
            " version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM ck_migrations").fetchone()
        current = int(row[0])
        if current > SCHEMA_VERSION:
            raise StoreUnavailable(
                f"this database has schema version {current}, newer than this chatkeep "
                f"understands ({SCHEMA_VERSION}); upgrade chatkeep"
            )
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for sql in statements:
                conn.execute(sql)
            conn.execute(
                "INSERT INTO ck_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (version, description, utcnow().isoformat()),
            )
        conn.execute("COMMIT")
        return current
    except BaseException:
        conn.execute("ROLLBACK")
        raise
