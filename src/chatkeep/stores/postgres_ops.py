"""PostgreSQL, sans IO: row mapping and every store operation.

Each operation is a generator that yields :class:`Q` (a statement, its parameters and what to
fetch) and receives the result; it returns the operation's value. The sync backend
(``postgres.py``) and the async one (``postgres_async.py``) only run these generators on a
pooled connection, so the two twins cannot drift apart. The statements' text, the migrations
and the URL options live in :mod:`chatkeep.stores.postgres_schema`.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import sql

from chatkeep.errors import StoreUnavailable, TokenizerMismatch
from chatkeep.policies.window import PINNED_ROLES, select_window
from chatkeep.stores._common import (
    check_expected,
    check_summary_args,
    decode_cursor,
    decode_row,
    encode_cursor,
    new_id,
    rewrite_conflict,
    stored,
    summary_of,
    utc,
)
from chatkeep.stores.base import NewRow, Rewrite, _Unset
from chatkeep.stores.postgres_schema import (
    BY_ID,
    LIVE,
    MSG_COLS,
    SCHEMA_VERSION,
    SESSION_COLS,
    Sql,
)
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    stored_from_message,
    utcnow,
)

Fetch = Literal["all", "one", "rowcount", "none"]


@dataclass(frozen=True, slots=True)
class Q:
    """One statement for a runner to execute."""

    query: bytes | sql.Composed
    params: Sequence[Any] | dict[str, Any] | None = None
    fetch: Fetch = "all"


Op = Generator[Q, Any, Any]


class Replay(Exception):
    """Raised inside an append transaction to roll it back and return an earlier result."""

    def __init__(self, result: AppendResult) -> None:
        self.result = result


# -- row mapping --------------------------------------------------------------------------------
def decode(session_id: str, row: Sequence[Any]) -> StoredMessage:
    """A stored row (``MSG_COLS`` order) as a :class:`StoredMessage`; never skip a bad one."""
    return decode_row(session_id, *row[:6])


def info_of(tenant: str, row: Sequence[Any]) -> SessionInfo:
    return SessionInfo(
        tenant=tenant,
        session_id=row[1],
        created_at=utc(row[2]),
        updated_at=utc(row[3]),
        message_count=row[4],
        last_seq=row[5],
        total_tokens=row[6],
        metadata=json.loads(row[7]),
        expires_at=utc(row[8]) if row[8] else None,
        summary_through_seq=row[9],
    )


def summary_from_session(row: Sequence[Any]) -> Summary | None:
    if row[10] is None:
        return None
    return summary_of(row[10], row[9], row[11], utc(row[12]))


def _args(tenant: str, session_id: str, **kw: Any) -> dict[str, Any]:
    return {"t": tenant, "sid": session_id, "now": utcnow(), **kw}


# -- operations ---------------------------------------------------------------------------------
def migrate(s: Sql) -> Op:
    """Bring the schema to ``SCHEMA_VERSION`` under an advisory lock (run in a transaction),
    so processes opening the store at once apply each migration exactly once."""
    yield Q(sql.SQL("SELECT pg_advisory_xact_lock(hashtext({}))").format(s.lock_key), None, "none")
    yield Q(s.q("CREATE SCHEMA IF NOT EXISTS {s}"), None, "none")
    yield Q(
        s.q(
            "CREATE TABLE IF NOT EXISTS {s}.ck_migrations (version integer PRIMARY KEY, "
            "description text NOT NULL, applied_at timestamptz NOT NULL)"
        ),
        None,
        "none",
    )
    row = yield Q(s.q("SELECT coalesce(max(version), 0) FROM {s}.ck_migrations"), None, "one")
    current = int(row[0])
    if current > SCHEMA_VERSION:
        raise StoreUnavailable(
            f"schema {s.schema!r} has chatkeep schema version {current}, newer than this "
            f"chatkeep understands ({SCHEMA_VERSION}); upgrade chatkeep"
        )
    for version, description, statements in s.migrations:
        if version <= current:
            continue
        for stmt in statements:
            yield Q(stmt, None, "none")
        yield Q(
            s.q("INSERT INTO {s}.ck_migrations VALUES (%s, %s, %s)"),
            (version, description, utcnow()),
            "none",
        )
    return current


def bind_tokenizer(s: Sql, name: str, where: str) -> Op:
    yield Q(
        s.q("INSERT INTO {s}.ck_meta VALUES ('tokenizer', %s) ON CONFLICT DO NOTHING"),
        (name,),
        "none",
    )
    row = yield Q(s.q("SELECT value FROM {s}.ck_meta WHERE key = 'tokenizer'"), None, "one")
    if row[0] != name:
        raise TokenizerMismatch(
            f"{where} holds token counts made by {row[0]!r}, not {name!r}; open it with "
            f"tokenizer={row[0]!r} or use another schema"
        )


def _batch(rows: list[NewRow]) -> dict[str, Any]:
    before: list[int] = []
    total = 0
    for r in rows:
        before.append(total)
        total += r.tokens
    n = len(rows)
    return {
        "n": n,
        "added": total,
        "lu": next((n - i for i, r in enumerate(reversed(rows)) if r.message.role == "user"), 0),
        "ids": [r.msg_id or new_id() for r in rows],
        "roles": [r.message.role for r in rows],
        "tokens": [r.tokens for r in rows],
        "before": before,
        "created": [r.message.created_at for r in rows],
        "bodies": [r.body.decode() for r in rows],
    }


def _result(session_id: str, rows: list[NewRow], base: int, ids: list[str]) -> AppendResult:
    done = tuple(
        stored(r.message, session_id=session_id, seq=base + 1 + i, tokens=r.tokens, msg_id=ids[i])
        for i, r in enumerate(rows)
    )
    return AppendResult(session_id, base + 1, base + len(rows), done)


def append_fast(
    s: Sql, tenant: str, session_id: str, rows: list[NewRow], expect_last_seq: int | None
) -> Op:
    """The one-statement append (autocommit). Returns None when the transactional path must
    decide (new or expired session, or a mismatched ``expect_last_seq``)."""
    if len(rows) == 1:
        return (yield from _append_one(s, tenant, session_id, rows[0], expect_last_seq))
    args = _args(tenant, session_id, expect=expect_last_seq, **_batch(rows))
    seqs = yield Q(s.append_fast, args, "all")
    if not seqs:
        return None
    return _result(session_id, rows, min(r[0] for r in seqs) - 1, args["ids"])


def _append_one(
    s: Sql, tenant: str, session_id: str, row: NewRow, expect_last_seq: int | None
) -> Op:
    message, body, tokens, given_id = row
    msg_id = given_id or new_id()
    args = {
        "t": tenant,
        "sid": session_id,
        "now": utcnow(),
        "expect": expect_last_seq,
        "tokens": tokens,
        "user": message.role == "user",
        "id": msg_id,
        "role": message.role,
        "created": message.created_at,
        "body": body.decode(),
    }
    got = yield Q(s.append_one, args, "one")
    if got is None:
        return None
    seq = got[0]
    done = stored_from_message(message, session_id, seq, tokens, msg_id)
    return AppendResult(session_id, seq, seq, (done,))


_CREATE_ATTEMPTS = 100  # rounds of create-then-lock against concurrent deletes


def _fresh_session(s: Sql, tenant: str, session_id: str, now: datetime | None = None) -> Op:
    """Inside a transaction: lock the session's live row, creating it if missing (an expired
    one is dropped first).

    The INSERT does nothing when another transaction has the row; a concurrent ``delete`` can
    then remove that row before our lock reaches it, so the lock finds nothing. Go round
    again (each statement sees what was committed before it) until a row is ours."""
    args = _args(tenant, session_id)
    if now is not None:
        args["now"] = now
    for _ in range(_CREATE_ATTEMPTS):
        row = yield Q(s.session_lock, args, "one")
        if row is not None and row[8] is not None and row[8] <= args["now"]:
            yield from _drop(s, row[0])
            row = None
        if row is not None:
            return row
        yield Q(
            s.q(
                "INSERT INTO {s}.ck_sessions (tenant, session_id, created_at, updated_at) "
                "VALUES (%(t)s, %(sid)s, %(now)s, %(now)s) ON CONFLICT DO NOTHING"
            ),
            args,
            "none",
        )
    raise StoreUnavailable(
        f"session {session_id!r} was deleted {_CREATE_ATTEMPTS} times while this write was "
        "creating it; nothing was written, try again"
    )


def _drop(s: Sql, pk: int) -> Op:
    for table, col in (("ck_messages", "session_pk"), ("ck_idempotency", "session_pk")):
        yield Q(s.q(f"DELETE FROM {{s}}.{table} WHERE {col} = %s"), (pk,), "none")
    yield Q(s.q("DELETE FROM {s}.ck_sessions WHERE pk = %s"), (pk,), "none")


def append_tx(
    s: Sql,
    tenant: str,
    session_id: str,
    rows: list[NewRow],
    idempotency_key: str | None,
    expect_last_seq: int | None,
) -> Op:
    """The transactional append: creates the session if needed, replays idempotency keys."""
    batch = _batch(rows)
    args = _args(tenant, session_id, **batch)
    claimed = yield Q(s.claim, args, "one")
    if claimed is None:
        yield from _fresh_session(s, tenant, session_id, args["now"])
        claimed = yield Q(s.claim, args, "one")
    pk, last_seq, tbase = claimed
    if idempotency_key is not None:
        seen = yield Q(
            s.q(
                "SELECT first_seq, last_seq FROM {s}.ck_idempotency "
                "WHERE session_pk = %s AND key = %s"
            ),
            (pk, idempotency_key),
            "one",
        )
        if seen is not None:
            old = yield Q(
                s.q(
                    f"SELECT {MSG_COLS} FROM {{s}}.ck_messages WHERE session_pk = %s "
                    "AND seq BETWEEN %s AND %s ORDER BY seq"
                ),
                (pk, seen[0], seen[1]),
                "all",
            )
            msgs = tuple(decode(session_id, r) for r in old)
            raise Replay(AppendResult(session_id, seen[0], seen[1], msgs, replayed=True))
    check_expected(session_id, expect_last_seq, last_seq)
    yield Q(s.insert_messages, {**batch, "pk": pk, "base": last_seq, "tbase": tbase}, "none")
    if idempotency_key is not None:
        yield Q(
            s.q("INSERT INTO {s}.ck_idempotency VALUES (%s, %s, %s, %s)"),
            (pk, idempotency_key, last_seq + 1, last_seq + len(rows)),
            "none",
        )
    return _result(session_id, rows, last_seq, batch["ids"])


def read(
    s: Sql, tenant: str, session_id: str, after_seq: int, limit: int | None, newest: bool
) -> Op:
    order = "DESC" if newest else "ASC"
    text = (
        f"SELECT m.seq, m.role, m.tokens, m.id, m.created_at, m.body FROM {{s}}.ck_sessions s "
        "JOIN {s}.ck_messages m ON m.session_pk = s.pk "
        f"WHERE s.tenant = %(t)s AND s.session_id = %(sid)s AND "
        "(s.expires_at IS NULL OR s.expires_at > %(now)s) AND m.seq > %(after)s "
        f"ORDER BY m.seq {order}"
    )
    if limit is not None:
        text += " LIMIT %(limit)s"
    rows = yield Q(s.q(text), _args(tenant, session_id, after=after_seq, limit=limit), "all")
    out = [decode(session_id, r) for r in rows]
    return out[::-1] if newest else out


def window(s: Sql, tenant: str, session_id: str, budget: int, pin_system: bool, reserve: int) -> Op:
    args = _args(tenant, session_id, pin=pin_system, budget=budget, reserve=reserve)
    rows = yield Q(s.window, args, "all")
    if not rows:
        return select_window(
            budget=budget,
            system=(),
            summary=None,
            tail=(),
            total_count=0,
            last_seq=0,
            reserve=reserve,
        )
    head = rows[0]
    last_seq, count = head[1], head[3]
    summary = None
    if head[6] is not None:
        summary = summary_of(head[6], head[7], head[8], utc(head[5]))
    system = [decode(session_id, r[1:]) for r in rows if r[0] == 1]
    tail = [
        m
        for m in (decode(session_id, r[1:]) for r in rows if r[0] == 2)
        if not (pin_system and m.role in PINNED_ROLES)
    ]
    return select_window(
        budget=budget,
        system=system,
        summary=summary,
        tail=tail,
        total_count=count,
        last_seq=last_seq,
        reserve=reserve,
    )


def _live_session(s: Sql, tenant: str, session_id: str, lock: bool = False) -> Op:
    args = _args(tenant, session_id)
    row = yield Q(s.session_lock if lock else s.session, args, "one")
    if row is not None and row[8] is not None and row[8] <= args["now"]:
        return None  # expired: gone for readers; the next write or purge deletes it
    return row


def pop(s: Sql, tenant: str, session_id: str) -> Op:
    row = yield from _live_session(s, tenant, session_id, lock=True)
    if row is None or row[5] == 0:
        return None
    pk, last = row[0], row[5]
    got = yield Q(
        s.q(
            f"DELETE FROM {{s}}.ck_messages WHERE session_pk = %s AND seq = %s RETURNING {MSG_COLS}"
        ),
        (pk, last),
        "one",
    )
    msg = decode(session_id, got)
    yield Q(
        s.q("DELETE FROM {s}.ck_idempotency WHERE session_pk = %s AND last_seq >= %s"),
        (pk, last),
        "none",
    )
    yield Q(
        s.q(
            "UPDATE {s}.ck_sessions SET last_seq = last_seq - 1, "
            "message_count = message_count - 1, total_tokens = total_tokens - %(tok)s, "
            "updated_at = %(now)s, "
            "summary = CASE WHEN summary_seq >= %(last)s THEN NULL ELSE summary END, "
            "summary_seq = CASE WHEN summary_seq >= %(last)s THEN 0 ELSE summary_seq END, "
            "last_user_seq = CASE WHEN last_user_seq = %(last)s THEN (SELECT coalesce(max(seq), 0)"
            " FROM {s}.ck_messages WHERE session_pk = %(pk)s AND role = 'user') "
            "ELSE last_user_seq END WHERE pk = %(pk)s"
        ),
        {"tok": msg.tokens, "now": utcnow(), "last": last, "pk": pk},
        "none",
    )
    return msg


def clear(s: Sql, tenant: str, session_id: str) -> Op:
    row = yield from _live_session(s, tenant, session_id, lock=True)
    if row is None:
        return 0
    pk = row[0]
    yield Q(s.q("DELETE FROM {s}.ck_messages WHERE session_pk = %s"), (pk,), "none")
    yield Q(s.q("DELETE FROM {s}.ck_idempotency WHERE session_pk = %s"), (pk,), "none")
    yield Q(
        s.q(
            "UPDATE {s}.ck_sessions SET last_seq = 0, message_count = 0, total_tokens = 0, "
            "summary = NULL, summary_seq = 0, summary_tokens = 0, summary_at = NULL, "
            "last_user_seq = 0, updated_at = %s WHERE pk = %s"
        ),
        (utcnow(), pk),
        "none",
    )
    return int(row[4])


def replace(
    s: Sql, tenant: str, session_id: str, rows: list[NewRow], expect_last_seq: int | None
) -> Op:
    """Inside one transaction, under the session row lock: the new list, seqs from 1, running
    token totals recomputed from 0; summary and idempotency keys dropped."""
    batch = _batch(rows)
    row = yield from _fresh_session(s, tenant, session_id)
    pk = row[0]
    check_expected(session_id, expect_last_seq, int(row[5]))
    yield Q(s.q("DELETE FROM {s}.ck_messages WHERE session_pk = %s"), (pk,), "none")
    yield Q(s.q("DELETE FROM {s}.ck_idempotency WHERE session_pk = %s"), (pk,), "none")
    if rows:
        yield Q(s.insert_messages, {**batch, "pk": pk, "base": 0, "tbase": 0}, "none")
    yield Q(
        s.q(
            "UPDATE {s}.ck_sessions SET last_seq = %(n)s, message_count = %(n)s, "
            "total_tokens = %(added)s, summary = NULL, summary_seq = 0, summary_tokens = 0, "
            "summary_at = NULL, last_user_seq = %(lu)s, updated_at = %(now)s WHERE pk = %(pk)s"
        ),
        {"n": batch["n"], "added": batch["added"], "lu": batch["lu"], "now": utcnow(), "pk": pk},
        "none",
    )
    return _result(session_id, rows, 0, batch["ids"])


def delete(s: Sql, tenant: str, session_id: str) -> Op:
    args = _args(tenant, session_id)
    yield Q(s.q(f"DELETE FROM {{s}}.ck_leases {BY_ID}"), args, "none")
    row = yield Q(s.session_lock, args, "one")
    if row is None:
        return False
    yield from _drop(s, row[0])
    return True


def _prefix_upper(prefix: str) -> str | None:
    last = ord(prefix[-1])
    return None if last >= 0x10FFFF else prefix[:-1] + chr(last + 1)


def sessions(s: Sql, tenant: str, prefix: str | None, limit: int, cursor: str | None) -> Op:
    after = decode_cursor(cursor)
    text = f"SELECT {SESSION_COLS} FROM {{s}}.ck_sessions WHERE tenant = %(t)s AND {LIVE}"
    args = _args(tenant, "", limit=limit + 1, after=after, prefix=prefix)
    if after is not None:
        text += " AND session_id > %(after)s"
    if prefix:
        text += " AND session_id >= %(prefix)s"
        upper = _prefix_upper(prefix)
        if upper is not None:
            text += " AND session_id < %(upper)s"
            args["upper"] = upper
        else:
            text += " AND left(session_id, %(plen)s) = %(prefix)s"
            args["plen"] = len(prefix)
    text += " ORDER BY session_id LIMIT %(limit)s"
    rows = yield Q(s.q(text), args, "all")
    items = tuple(info_of(tenant, r) for r in rows[:limit])
    nxt = encode_cursor(rows[limit - 1][1]) if len(rows) > limit else None
    return SessionPage(items, nxt)


def info(s: Sql, tenant: str, session_id: str) -> Op:
    row = yield from _live_session(s, tenant, session_id)
    return None if row is None else info_of(tenant, row)


def update_session(
    s: Sql,
    tenant: str,
    session_id: str,
    metadata: JSONObject | None,
    expires_at: datetime | _Unset | None,
) -> Op:
    row = yield from _fresh_session(s, tenant, session_id)
    sets = ["updated_at = %(now)s"]
    args: dict[str, Any] = {"now": utcnow(), "pk": row[0]}
    if metadata is not None:
        sets.append("metadata = %(meta)s")
        args["meta"] = json.dumps(metadata, ensure_ascii=False)
    if not isinstance(expires_at, _Unset):
        sets.append("expires_at = %(exp)s")
        args["exp"] = expires_at
    new = yield Q(
        s.q(
            f"UPDATE {{s}}.ck_sessions SET {', '.join(sets)} WHERE pk = %(pk)s "
            f"RETURNING {SESSION_COLS}"
        ),
        args,
        "one",
    )
    return info_of(tenant, new)


def get_summary(s: Sql, tenant: str, session_id: str) -> Op:
    row = yield from _live_session(s, tenant, session_id)
    return None if row is None else summary_from_session(row)


def put_summary(
    s: Sql, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
) -> Op:
    row = yield from _live_session(s, tenant, session_id, lock=True)
    check_summary_args(session_id, covers_through_seq, row[5] if row else 0)
    row = yield from _fresh_session(s, tenant, session_id)
    now = utcnow()
    yield Q(
        s.q(
            "UPDATE {s}.ck_sessions SET summary = %s, summary_seq = %s, summary_tokens = %s, "
            "summary_at = %s, updated_at = %s WHERE pk = %s"
        ),
        (text, covers_through_seq, tokens, now, now, row[0]),
        "none",
    )
    return summary_of(text, covers_through_seq, tokens, now)


def purge_expired(s: Sql, now: datetime) -> Op:
    dead = yield Q(
        s.q(
            "SELECT pk, tenant, session_id FROM {s}.ck_sessions "
            "WHERE expires_at IS NOT NULL AND expires_at <= %s FOR UPDATE SKIP LOCKED"
        ),
        (now,),
        "all",
    )
    for pk, tenant, session_id in dead:
        yield from _drop(s, pk)
        yield Q(
            s.q("DELETE FROM {s}.ck_leases WHERE tenant = %s AND session_id = %s"),
            (tenant, session_id),
            "none",
        )
    return len(dead)


def erase(s: Sql, tenant: str) -> Op:
    pks = yield Q(
        s.q("SELECT pk FROM {s}.ck_sessions WHERE tenant = %s FOR UPDATE"), (tenant,), "all"
    )
    ids = [r[0] for r in pks]
    yield Q(s.q("DELETE FROM {s}.ck_messages WHERE session_pk = ANY(%s)"), (ids,), "none")
    yield Q(s.q("DELETE FROM {s}.ck_idempotency WHERE session_pk = ANY(%s)"), (ids,), "none")
    yield Q(s.q("DELETE FROM {s}.ck_sessions WHERE pk = ANY(%s)"), (ids,), "none")
    yield Q(s.q("DELETE FROM {s}.ck_leases WHERE tenant = %s"), (tenant,), "none")
    return len(ids)


# Leases use the server's clock, so app servers with drifting clocks still agree on expiry.
_NOW_EPOCH = "extract(epoch FROM clock_timestamp())::double precision"


def acquire_lease(s: Sql, tenant: str, session_id: str, owner: str, ttl: float) -> Op:
    row = yield Q(
        s.q(
            "INSERT INTO {s}.ck_leases AS l (tenant, session_id, owner, token, expires) "
            f"VALUES (%(t)s, %(sid)s, %(owner)s, 1, {_NOW_EPOCH} + %(ttl)s) "
            "ON CONFLICT (tenant, session_id) DO UPDATE SET owner = excluded.owner, "
            "token = l.token + 1, expires = excluded.expires "
            f"WHERE l.expires <= {_NOW_EPOCH} OR l.owner = excluded.owner "
            "RETURNING token, expires"
        ),
        {"t": tenant, "sid": session_id, "owner": owner, "ttl": ttl},
        "one",
    )
    return None if row is None else Lease(session_id, owner, int(row[0]), float(row[1]))


def release_lease(s: Sql, tenant: str, session_id: str, token: int) -> Op:
    n = yield Q(
        s.q(
            "UPDATE {s}.ck_leases SET expires = 0 WHERE tenant = %s AND session_id = %s "
            "AND token = %s AND expires > 0"
        ),
        (tenant, session_id, token),
        "rowcount",
    )
    return bool(n)


def rewrite_bodies(s: Sql, tenant: str, session_id: str, rows: list[Rewrite]) -> Op:
    """Inside a transaction (a conflict rolls every rewrite back)."""
    row = yield from _live_session(s, tenant, session_id, lock=True)
    for seq, msg_id, body in rows:
        done = None
        if row is not None:
            done = yield Q(
                s.q(
                    "UPDATE {s}.ck_messages SET body = %s WHERE session_pk = %s AND seq = %s "
                    "AND id = %s RETURNING seq"
                ),
                (body.decode(), row[0], seq, msg_id),
                "one",
            )
        if done is None:
            raise rewrite_conflict(session_id, seq)


def tenants(s: Sql) -> Op:
    rows = yield Q(s.q("SELECT DISTINCT tenant FROM {s}.ck_sessions ORDER BY tenant"), (), "all")
    return [r[0] for r in rows]
