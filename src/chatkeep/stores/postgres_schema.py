"""PostgreSQL, sans IO: URL options, versioned migrations and the statements' text.

Identifiers never reach SQL as formatted strings: the schema name is validated here and
quoted by :class:`psycopg.sql.Identifier`; every statement is composed once per store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from chatkeep.errors import InvalidURL

# -- URL options --------------------------------------------------------------------------------
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")
OPTIONS = {
    "schema",
    "min_size",
    "max_size",
    "pool_timeout",
    "connect_timeout",
    "statement_timeout",
    "prepare_threshold",
    "pgbouncer",
}
_BOOL = dict.fromkeys(("true", "1", "yes", "on"), True) | dict.fromkeys(
    ("false", "0", "no", "off"), False
)


@dataclass(frozen=True, slots=True)
class PgOptions:
    """What a ``postgresql://`` URL asks for. Other query parameters go to libpq unchanged."""

    conninfo: str = field(repr=False)  # may hold a password
    schema: str = "public"
    min_size: int = 1
    max_size: int = 10
    pool_timeout: float = 10.0
    connect_timeout: float = 5.0
    statement_timeout: float = 30.0
    prepare_threshold: int = 5  # 0 = never prepare server-side
    pgbouncer: bool = False  # behind a pooler: no startup options, nothing prepared by default

    @property
    def reconnect_timeout(self) -> float:
        """How long the pool keeps retrying one lost connection before it drops it; the next
        call then connects afresh. psycopg_pool doubles its delay between retries (1, 2, 4, 8
        ... seconds) for up to this long, so its default (5 minutes) let a 30 s database
        restart keep the store failing for ~30 s more. Short chains bound that to ~2 s."""
        return max(5.0, 2 * self.connect_timeout)

    def connect_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(self.connect_timeout)),
            "prepare_threshold": self.prepare_threshold or None,
        }
        if self.pgbouncer:  # PgBouncer refuses the ``options`` startup parameter (times are
            return kw  # made UTC on read anyway; TimeZone=UTC only saves the conversion)
        if self.statement_timeout:  # startup options; ?statement_timeout=0 sends none
            ms = int(self.statement_timeout * 1000)
            kw["options"] = f"-c statement_timeout={ms} -c TimeZone=UTC"
        return kw


def parse_url(url: str, redacted: str) -> PgOptions:
    """Split ``url`` into chatkeep's options and the libpq connection string; validate both."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in pairs if k in OPTIONS}
    rest = [(k, v) for k, v in pairs if k not in OPTIONS]
    if len(ours) != sum(1 for k, _ in pairs if k in OPTIONS):
        raise InvalidURL(f"{redacted}: an option is given twice")
    schema = ours.get("schema", "public")
    if not _IDENT.match(schema):
        raise InvalidURL(
            f"schema={schema!r} in {redacted}: use 1-63 ASCII letters, digits or underscores, "
            "not starting with a digit"
        )

    def number(key: str, default: float, lo: float, hi: float, integer: bool = False) -> float:
        raw = ours.get(key)
        if raw is None:
            return default
        try:
            value = int(raw) if integer else float(raw)
        except ValueError:
            raise InvalidURL(f"{key}={raw!r} in {redacted} is not a number") from None
        if not lo <= value <= hi:
            raise InvalidURL(f"{key} in {redacted} must be between {lo:g} and {hi:g}")
        return value

    min_size = int(number("min_size", 1, 0, 1000, integer=True))
    max_size = int(number("max_size", max(10, min_size), 1, 1000, integer=True))
    if max_size < min_size:
        raise InvalidURL(f"{redacted}: max_size ({max_size}) is below min_size ({min_size})")
    raw_bouncer = ours.get("pgbouncer", "false")
    pgbouncer = _BOOL.get(raw_bouncer.lower())
    if pgbouncer is None:
        raise InvalidURL(f"pgbouncer={raw_bouncer!r} in {redacted}: use true or false")
    if pgbouncer and number("statement_timeout", 0, 0, 3600):
        raise InvalidURL(
            f"{redacted}: statement_timeout cannot be sent through PgBouncer (it refuses "
            "startup options, and a session SET would leak to other clients in transaction "
            "pooling); set it on the server side instead (ALTER ROLE ... SET "
            "statement_timeout = '30s') and drop it from the URL"
        )
    conninfo = parts._replace(scheme="postgresql", query=urlencode(rest)).geturl()
    try:
        conninfo_to_dict(conninfo)  # libpq's own parser: unknown options fail here, not later
    except psycopg.ProgrammingError as exc:
        raise InvalidURL(f"{redacted}: {str(exc).strip()}") from None
    return PgOptions(
        conninfo=conninfo,
        schema=schema,
        min_size=min_size,
        max_size=max_size,
        pool_timeout=number("pool_timeout", 10.0, 0.1, 3600),
        connect_timeout=number("connect_timeout", 5.0, 1, 3600),
        statement_timeout=0.0 if pgbouncer else number("statement_timeout", 30.0, 0, 3600),
        # Behind PgBouncer nothing is prepared unless asked for (PgBouncer 1.21+ can keep
        # prepared statements with max_prepared_statements set).
        prepare_threshold=int(
            number("prepare_threshold", 0 if pgbouncer else 5, 0, 1000, integer=True)
        ),
        pgbouncer=pgbouncer,
    )


# -- migrations ---------------------------------------------------------------------------------
# Append-only: a released migration is never edited; a change is a new entry at the end.
# ``{s}`` is the schema (an Identifier). session_id uses the "C" collation so the sessions
# listing sorts by code point, like every other backend, and prefix ranges are index ranges.
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "sessions, messages with running token totals, idempotency keys, leases",
        (
            "CREATE TABLE {s}.ck_meta (key text PRIMARY KEY, value text NOT NULL)",
            """CREATE TABLE {s}.ck_sessions (
                pk             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                tenant         text NOT NULL,
                session_id     text COLLATE "C" NOT NULL,
                created_at     timestamptz NOT NULL,
                updated_at     timestamptz NOT NULL,
                last_seq       bigint NOT NULL DEFAULT 0,
                message_count  bigint NOT NULL DEFAULT 0,
                total_tokens   bigint NOT NULL DEFAULT 0,
                metadata       text NOT NULL DEFAULT '{{}}',
                expires_at     timestamptz,
                summary        text,
                summary_seq    bigint NOT NULL DEFAULT 0,
                summary_tokens bigint NOT NULL DEFAULT 0,
                summary_at     timestamptz,
                last_user_seq  bigint NOT NULL DEFAULT 0,
                UNIQUE (tenant, session_id)
            )""",
            "CREATE INDEX ck_sessions_expiry ON {s}.ck_sessions (expires_at) "
            "WHERE expires_at IS NOT NULL",
            # prefix_tokens = tokens of every earlier message of the session: the window's
            # cut is one index lookup on (session_pk, prefix_tokens).
            """CREATE TABLE {s}.ck_messages (
                session_pk    bigint NOT NULL,
                seq           bigint NOT NULL,
                id            text NOT NULL,
                role          text NOT NULL,
                tokens        bigint NOT NULL,
                prefix_tokens bigint NOT NULL,
                created_at    timestamptz NOT NULL,
                body          text NOT NULL,
                PRIMARY KEY (session_pk, seq)
            )""",
            "CREATE INDEX ck_messages_prefix ON {s}.ck_messages (session_pk, prefix_tokens)",
            "CREATE INDEX ck_messages_pinned ON {s}.ck_messages (session_pk, seq) "
            "WHERE role IN ('developer', 'system')",
            """CREATE TABLE {s}.ck_idempotency (
                session_pk bigint NOT NULL,
                key        text NOT NULL,
                first_seq  bigint NOT NULL,
                last_seq   bigint NOT NULL,
                PRIMARY KEY (session_pk, key)
            )""",
            """CREATE TABLE {s}.ck_leases (
                tenant     text NOT NULL,
                session_id text NOT NULL,
                owner      text NOT NULL,
                token      bigint NOT NULL,
                expires    double precision NOT NULL,
                PRIMARY KEY (tenant, session_id)
            )""",
        ),
    ),
)

SCHEMA_VERSION = MIGRATIONS[-1][0]


class Sql:
    """Every statement, composed once for one schema."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        ident = sql.Identifier(schema)

        cache: dict[str, bytes] = {}

        def q(text: str) -> bytes:
            # Rendered once: the schema is validated and quoted by Identifier, and the driver
            # then sends bytes instead of re-rendering a Composed on every call.
            got = cache.get(text)
            if got is None:
                got = cache[text] = sql.SQL(text).format(s=ident).as_bytes(None)
            return got

        self.q = q
        self.migrations = [
            (version, desc, [q(stmt) for stmt in stmts]) for version, desc, stmts in MIGRATIONS
        ]
        self.lock_key = sql.Literal(f"chatkeep-migrate:{schema}")
        self.claim = q(_CLAIM)
        self.append_fast = q(_APPEND_FAST)
        self.append_one = q(_APPEND_ONE)
        self.insert_messages = q(_INSERT_MESSAGES)
        self.window = q(_WINDOW)
        self.session = q(f"SELECT {SESSION_COLS} FROM {{s}}.ck_sessions {BY_ID}")
        self.session_lock = q(f"SELECT {SESSION_COLS} FROM {{s}}.ck_sessions {BY_ID} FOR UPDATE")


SESSION_COLS = (
    "pk, session_id, created_at, updated_at, message_count, last_seq, total_tokens, metadata, "
    "expires_at, summary_seq, summary, summary_tokens, summary_at, last_user_seq"
)
MSG_COLS = "seq, role, tokens, id, created_at, body"
BY_ID = "WHERE tenant = %(t)s AND session_id = %(sid)s"
LIVE = "(expires_at IS NULL OR expires_at > %(now)s)"

# Claims seqs on the session row; the row lock orders appends to one session, other sessions
# proceed in parallel.
_CLAIM = f"""
UPDATE {{s}}.ck_sessions
SET last_seq = last_seq + %(n)s, message_count = message_count + %(n)s,
    total_tokens = total_tokens + %(added)s, updated_at = %(now)s,
    last_user_seq = CASE WHEN %(lu)s > 0 THEN last_seq + %(lu)s ELSE last_user_seq END
{BY_ID} AND {LIVE}
RETURNING pk, last_seq - %(n)s, total_tokens - %(added)s
"""

_UNNEST = """unnest(%(ids)s::text[], %(roles)s::text[], %(tokens)s::bigint[],
    %(before)s::bigint[], %(created)s::timestamptz[], %(bodies)s::text[])
    WITH ORDINALITY AS m(id, role, tokens, before, created_at, body, ord)"""

# The common append (a live session, no idempotency key) as one statement: claim the seqs and
# insert the rows. No rows back means "take the transactional path" (new or expired session,
# or expect_last_seq does not match, which that path reports precisely).
_APPEND_FAST = f"""
WITH c AS (
    UPDATE {{s}}.ck_sessions
    SET last_seq = last_seq + %(n)s, message_count = message_count + %(n)s,
        total_tokens = total_tokens + %(added)s, updated_at = %(now)s,
        last_user_seq = CASE WHEN %(lu)s > 0 THEN last_seq + %(lu)s ELSE last_user_seq END
    {BY_ID} AND {LIVE} AND (%(expect)s::bigint IS NULL OR last_seq = %(expect)s::bigint)
    RETURNING pk, last_seq - %(n)s AS base, total_tokens - %(added)s AS tbase
)
INSERT INTO {{s}}.ck_messages
    (session_pk, seq, id, role, tokens, prefix_tokens, created_at, body)
SELECT c.pk, c.base + m.ord, m.id, m.role, m.tokens, c.tbase + m.before, m.created_at, m.body
FROM c, {_UNNEST}
RETURNING seq
"""

# The append of one message (the common case): the same as _APPEND_FAST with scalars instead
# of arrays, so neither the driver nor the server builds, sends and unnests six arrays.
_APPEND_ONE = f"""
WITH c AS (
    UPDATE {{s}}.ck_sessions
    SET last_seq = last_seq + 1, message_count = message_count + 1,
        total_tokens = total_tokens + %(tokens)s::bigint, updated_at = %(now)s,
        last_user_seq = CASE WHEN %(user)s::boolean THEN last_seq + 1 ELSE last_user_seq END
    {BY_ID} AND {LIVE} AND (%(expect)s::bigint IS NULL OR last_seq = %(expect)s::bigint)
    RETURNING pk, last_seq, total_tokens
)
INSERT INTO {{s}}.ck_messages
    (session_pk, seq, id, role, tokens, prefix_tokens, created_at, body)
SELECT c.pk, c.last_seq, %(id)s::text, %(role)s::text, %(tokens)s::bigint,
       c.total_tokens - %(tokens)s::bigint, %(created)s::timestamptz, %(body)s::text
FROM c
RETURNING seq
"""

_INSERT_MESSAGES = f"""
INSERT INTO {{s}}.ck_messages
    (session_pk, seq, id, role, tokens, prefix_tokens, created_at, body)
SELECT %(pk)s, %(base)s + m.ord, m.id, m.role, m.tokens, %(tbase)s + m.before,
       m.created_at, m.body
FROM {_UNNEST}
"""

# One statement serves a window: part 0 is the session row, part 1 the pinned messages, part 2
# the tail. The tail starts at the first message whose running total reaches the budget cut
# (one index lookup), or earlier at the latest user message after the summary.
_WINDOW = f"""
WITH s AS (
    SELECT pk, message_count, last_seq, total_tokens, summary_seq, summary, summary_tokens,
           summary_at, last_user_seq
    FROM {{s}}.ck_sessions {BY_ID} AND {LIVE}
), p AS (
    SELECT m.seq, m.role, m.tokens, m.id, m.created_at, m.body
    FROM s JOIN {{s}}.ck_messages m ON m.session_pk = s.pk
    WHERE %(pin)s::boolean AND m.role IN ('developer', 'system') AND m.seq <= s.last_seq
), b AS (
    SELECT s.pk, s.last_seq, s.summary_seq,
           CASE WHEN s.last_user_seq > s.summary_seq THEN s.last_user_seq
                ELSE s.last_seq + 1 END AS user_seq,
           (s.total_tokens - pt.t - greatest(
               %(budget)s::bigint - %(reserve)s::bigint - pt.t
               - CASE WHEN s.summary IS NULL THEN 0 ELSE s.summary_tokens END, 0))::bigint
               AS bound
    FROM s, (SELECT coalesce(sum(tokens), 0)::bigint AS t FROM p) pt
), c AS MATERIALIZED (
    SELECT b.pk, b.last_seq, greatest(b.summary_seq + 1, least(
        coalesce((SELECT x.seq FROM {{s}}.ck_messages x
                  WHERE x.session_pk = b.pk AND x.prefix_tokens >= b.bound
                  ORDER BY x.prefix_tokens LIMIT 1), b.last_seq + 1),
        b.user_seq)) AS start
    FROM b
)
SELECT 0 AS part, s.last_seq AS seq, NULL AS role, s.message_count AS tokens, NULL AS id,
       s.summary_at AS created_at, s.summary AS body, s.summary_seq, s.summary_tokens
FROM s
UNION ALL
SELECT 1, p.seq, p.role, p.tokens, p.id, p.created_at, p.body, NULL, NULL FROM p
UNION ALL
SELECT 2, m.seq, m.role, m.tokens, m.id, m.created_at, m.body, NULL, NULL
FROM c JOIN {{s}}.ck_messages m
    ON m.session_pk = c.pk AND m.seq >= c.start AND m.seq <= c.last_seq
ORDER BY part, seq
"""
