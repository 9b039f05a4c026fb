"""``memory://``: the in-process reference backend and test double.

Everything lives in this Python process and is gone when it exits, reloads or forks a second
worker: exactly the failure chatkeep exists to fix. It is here for tests and for trying the API;
:class:`chatkeep.Store` warns when it is opened outside tests.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime

from chatkeep.errors import TokenizerMismatch
from chatkeep.policies.window import window_from_history
from chatkeep.stores._common import (
    _loads,
    check_expected,
    check_summary_args,
    decode_cursor,
    encode_cursor,
    rewrite_conflict,
    stored,
    summary_of,
)
from chatkeep.stores._detach import copy_json, detach, detach_all, detach_result, detach_window
from chatkeep.stores.base import UNSET, NewRow, Rewrite, _Unset
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
    stored_from_row,
    utcnow,
)


@dataclass
class _Session:
    created_at: datetime
    updated_at: datetime
    messages: list[StoredMessage] = field(default_factory=list)
    metadata: JSONObject = field(default_factory=dict)
    expires_at: datetime | None = None
    summary: Summary | None = None
    idempotency: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def last_seq(self) -> int:
        return self.messages[-1].seq if self.messages else 0


@dataclass
class _LeaseRow:
    owner: str
    token: int
    expires: float


class MemoryBackend:
    """Dicts under one lock. Semantics match the durable backends exactly."""

    scheme = "memory"
    ephemeral = True

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._data: dict[tuple[str, str], _Session] = {}
        self._leases: dict[tuple[str, str], _LeaseRow] = {}
        self._tokenizer: str | None = None

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def bind_tokenizer(self, name: str) -> None:
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = name
            elif self._tokenizer != name:
                raise TokenizerMismatch(
                    f"this store was written with tokenizer {self._tokenizer!r}, not {name!r}"
                )

    def _live(self, tenant: str, session_id: str) -> _Session | None:
        s = self._data.get((tenant, session_id))
        if s is not None and s.expires_at is not None and s.expires_at <= utcnow():
            return None  # expired: gone for readers; the next write or purge deletes it
        return s

    def _info(self, tenant: str, session_id: str, s: _Session) -> SessionInfo:
        return SessionInfo(
            tenant=tenant,
            session_id=session_id,
            created_at=s.created_at,
            updated_at=s.updated_at,
            message_count=len(s.messages),
            last_seq=s.last_seq,
            total_tokens=sum(m.tokens for m in s.messages),
            metadata=copy_json(s.metadata),
            expires_at=s.expires_at,
            summary_through_seq=s.summary.covers_through_seq if s.summary else 0,
        )

    def _get_or_create(self, tenant: str, session_id: str) -> _Session:
        s = self._live(tenant, session_id)
        if s is None:
            now = utcnow()
            s = self._data[(tenant, session_id)] = _Session(created_at=now, updated_at=now)
        return s

    def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult:
        with self._lock:
            s = self._get_or_create(tenant, session_id)
            if idempotency_key is not None and idempotency_key in s.idempotency:
                first, last = s.idempotency[idempotency_key]
                old = tuple(detach_all(s.messages[first - 1 : last]))
                return AppendResult(session_id, first, last, old, replayed=True)
            check_expected(session_id, expect_last_seq, s.last_seq)
            first = s.last_seq + 1
            new = [  # detached: the caller's message keeps its own lists and dicts
                detach(
                    stored(
                        r.message,
                        session_id=session_id,
                        seq=first + i,
                        tokens=r.tokens,
                        msg_id=r.msg_id,
                    )
                )
                for i, r in enumerate(rows)
            ]
            s.messages.extend(new)
            s.updated_at = utcnow()
            if idempotency_key is not None:
                s.idempotency[idempotency_key] = (first, new[-1].seq)
            return detach_result(AppendResult(session_id, first, new[-1].seq, tuple(new)))

    def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        with self._lock:
            s = self._live(tenant, session_id)
            if s is None:
                return []
            rows = [m for m in s.messages if m.seq > after_seq]
        if limit is not None:
            rows = rows[-limit:] if newest else rows[:limit]
        return detach_all(rows)

    def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        with self._lock:
            s = self._live(tenant, session_id)
            history = list(s.messages) if s else []
            summary = s.summary if s else None
        return detach_window(
            window_from_history(
                history, budget=budget, summary=summary, pin_system=pin_system, reserve=reserve
            )
        )

    def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        with self._lock:
            s = self._live(tenant, session_id)
            if s is None or not s.messages:
                return None
            last = s.messages.pop()
            s.idempotency = {k: v for k, v in s.idempotency.items() if v[1] < last.seq}
            if s.summary is not None and s.summary.covers_through_seq >= last.seq:
                s.summary = None
            s.updated_at = utcnow()
            return last

    def clear(self, tenant: str, session_id: str) -> int:
        with self._lock:
            s = self._live(tenant, session_id)
            if s is None:
                return 0
            n = len(s.messages)
            s.messages.clear()
            s.idempotency.clear()
            s.summary = None
            s.updated_at = utcnow()
            return n

    def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult:
        with self._lock:
            s = self._get_or_create(tenant, session_id)
            check_expected(session_id, expect_last_seq, s.last_seq)
            new = [  # detached: the caller's messages keep their own lists and dicts
                detach(
                    stored(
                        r.message,
                        session_id=session_id,
                        seq=1 + i,
                        tokens=r.tokens,
                        msg_id=r.msg_id,
                    )
                )
                for i, r in enumerate(rows)
            ]
            s.messages = new
            s.idempotency.clear()
            s.summary = None
            s.updated_at = utcnow()
            return detach_result(AppendResult(session_id, 1, len(new), tuple(new)))

    def delete(self, tenant: str, session_id: str) -> bool:
        with self._lock:
            self._leases.pop((tenant, session_id), None)
            return self._data.pop((tenant, session_id), None) is not None

    def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        after = decode_cursor(cursor)
        with self._lock:
            ids = sorted(
                sid
                for (t, sid) in list(self._data)
                if t == tenant
                and self._live(t, sid) is not None
                and (prefix is None or sid.startswith(prefix))
                and (after is None or sid > after)
            )
            page = ids[: limit + 1]
            items = tuple(
                self._info(tenant, sid, self._data[(tenant, sid)]) for sid in page[:limit]
            )
        nxt = encode_cursor(page[limit - 1]) if len(page) > limit else None
        return SessionPage(items, nxt)

    def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        with self._lock:
            s = self._live(tenant, session_id)
            return self._info(tenant, session_id, s) if s else None

    def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        with self._lock:
            s = self._get_or_create(tenant, session_id)
            if metadata is not None:
                s.metadata = copy_json(metadata)
            if not isinstance(expires_at, _Unset):
                s.expires_at = expires_at
            s.updated_at = utcnow()
            return self._info(tenant, session_id, s)

    def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        with self._lock:
            s = self._live(tenant, session_id)
            return s.summary if s else None

    def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        with self._lock:
            s = self._live(tenant, session_id)
            check_summary_args(session_id, covers_through_seq, s.last_seq if s else 0)
            s = self._get_or_create(tenant, session_id)
            s.updated_at = utcnow()
            s.summary = summary_of(text, covers_through_seq, tokens, s.updated_at)
            return s.summary

    def purge_expired(self, now: datetime) -> int:
        with self._lock:
            dead = [k for k, s in self._data.items() if s.expires_at and s.expires_at <= now]
            for k in dead:
                del self._data[k]
                self._leases.pop(k, None)
            return len(dead)

    def erase(self, tenant: str) -> int:
        with self._lock:
            dead = [k for k in self._data if k[0] == tenant]
            for k in dead:
                del self._data[k]
            for k in [k for k in self._leases if k[0] == tenant]:
                del self._leases[k]
            return len(dead)

    def acquire_lease(self, tenant: str, session_id: str, owner: str, ttl: float) -> Lease | None:
        now = time.time()
        with self._lock:
            row = self._leases.get((tenant, session_id))
            if row is not None and row.expires > now and row.owner != owner:
                return None
            token = (row.token if row else 0) + 1
            self._leases[(tenant, session_id)] = _LeaseRow(owner, token, now + ttl)
            return Lease(session_id, owner, token, now + ttl)

    def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        with self._lock:
            row = self._leases.get((tenant, session_id))
            if row is None or row.token != token or row.expires <= 0:
                return False
            row.expires = 0.0
            return True

    def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        with self._lock:
            s = self._live(tenant, session_id)
            new: dict[int, StoredMessage] = {}
            for seq, msg_id, body in rows:
                if s is None or not 0 < seq <= len(s.messages) or s.messages[seq - 1].id != msg_id:
                    raise rewrite_conflict(session_id, seq)
                m = s.messages[seq - 1]
                new[seq] = stored_from_row(
                    session_id, seq, m.role, m.tokens, msg_id, m.created_at, _loads(body)
                )
            if s is not None:
                for seq, m in new.items():
                    s.messages[seq - 1] = m

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted({tenant for tenant, _ in self._data})
