"""The record format of the ``file://`` backend: safe file names and session replay.

See :mod:`chatkeep.stores.file` for the layout and the durability rules; this module is the
non-IO part: how ids become file names and how a session's JSON Lines records replay into its
state (and compact back into records).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import unquote

from chatkeep.stores._common import (
    new_id,
    parse_ts,
    summary_of,
    ts,
)
from chatkeep.stores._detach import copy_json
from chatkeep.types import (
    ROLES,
    JSONObject,
    SessionInfo,
    StoredMessage,
    Summary,
    stored_from_row,
    utcnow,
)

FORMAT = 1
_MAX_NAME = 200  # bytes of an encoded name; longer ids get a hash-based name


_LITERAL = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789_-")
_ENCODED = tuple(chr(b) if b in _LITERAL else f"%{b:02X}" for b in range(256))


def encode_name(value: str) -> str:
    """A safe, reversible file name for a tenant or session id (see the module docstring)."""
    name = "".join([_ENCODED[b] for b in value.encode("utf-8", "surrogatepass")])
    if len(name) > _MAX_NAME:
        return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest() + ".h"
    return name


def decode_name(name: str) -> str | None:
    """The id a file name stands for, or None for a hash-based name (read the header)."""
    return None if name.endswith(".h") else unquote(name, errors="surrogatepass")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class _Gone(Exception):
    """The session's files disappeared while we waited for them (deleted or erased)."""


@dataclass
class _State:
    """A session as replayed from its file, up to ``offset`` bytes (``lines`` lines)."""

    tenant: str = ""
    session_id: str = ""
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    inode: tuple[int, int] = (0, 0)
    head: bytes = b""  # the header line: a rewrite or a new file has a different one
    offset: int = 0
    lines: int = 0
    messages: list[StoredMessage] = field(default_factory=list)
    metadata: JSONObject = field(default_factory=dict)
    expires_at: datetime | None = None
    summary: Summary | None = None
    idempotency: dict[str, tuple[int, int]] = field(default_factory=dict)
    dead: int = 0  # records that no longer contribute (popped, cleared, superseded)

    @property
    def last_seq(self) -> int:
        return self.messages[-1].seq if self.messages else 0

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    def apply(self, rec: Any) -> None:
        if not isinstance(rec, dict):
            raise ValueError("a record must be a JSON object")
        kind = rec["k"]
        at = parse_ts(rec["at"])
        if (kind == "h") == bool(self.session_id):
            raise ValueError("the header must be the first record, and only the first")
        if kind == "h":
            tenant, sid = rec["tenant"], rec["sid"]
            if not isinstance(tenant, str) or not isinstance(sid, str) or not sid:
                raise ValueError("bad header")
            self.tenant, self.session_id, self.created_at = tenant, sid, at
        elif kind in ("b", "r"):
            if kind == "r":  # replace: a clear and a (possibly empty) batch in one record
                self.dead += len(self.messages) + 1
                self.messages.clear()
                self.idempotency.clear()
                self.summary = None
            elif not rec["m"]:
                raise ValueError("empty message batch")
            first = self.last_seq + 1
            for i, row in enumerate(rec["m"]):
                seq, role, tokens, msg_id, created, body = row
                content = body.get("content", "")
                if (
                    seq != first + i
                    or role not in ROLES
                    or type(tokens) is not int
                    or not isinstance(msg_id, str)
                    or not isinstance(content, str | list)
                ):
                    raise ValueError(f"bad message record (seq {seq!r}, expected {first + i})")
                self.messages.append(
                    stored_from_row(
                        self.session_id, seq, role, tokens, msg_id, parse_ts(created), body
                    )
                )
            key = rec.get("i")
            if key is not None:
                self.idempotency[str(key)] = (first, self.last_seq)
        elif kind == "pop":
            seq = rec["seq"]
            if not self.messages or self.messages[-1].seq != seq:
                raise ValueError(f"pop of seq {seq!r} does not match the session")
            self.messages.pop()
            self.idempotency = {k: v for k, v in self.idempotency.items() if v[1] < seq}
            if self.summary is not None and self.summary.covers_through_seq >= seq:
                self.summary = None
            self.dead += 2
        elif kind == "clear":
            self.dead += len(self.messages) + 1
            self.messages.clear()
            self.idempotency.clear()
            self.summary = None
        elif kind == "w":  # bodies rewritten in place (rekey): not activity, keeps updated_at
            self._rewrite(rec["m"])
            return
        elif kind == "meta":
            if not isinstance(rec["metadata"], dict):
                raise ValueError("metadata must be an object")
            self.metadata = rec["metadata"]
            self.dead += 1
        elif kind == "exp":
            self.expires_at = parse_ts(rec["expires_at"]) if rec["expires_at"] else None
            self.dead += 1
        elif kind == "sum":
            text, covers, tokens = rec["text"], rec["covers"], rec["tokens"]
            if not isinstance(text, str) or type(covers) is not int or type(tokens) is not int:
                raise ValueError("bad summary record")
            when = parse_ts(rec["sat"]) if "sat" in rec else at  # kept by a compaction
            self.summary = summary_of(text, covers, tokens, when)
            self.dead += 1
        else:
            raise ValueError(f"unknown record kind {kind!r}")
        self.updated_at = at

    def _rewrite(self, rows: Any) -> None:
        new = {}
        for seq, msg_id, body in rows:
            if type(seq) is not int or not 0 < seq <= len(self.messages):
                raise ValueError(f"rewrite of seq {seq!r} does not match the session")
            m = self.messages[seq - 1]
            if m.id != msg_id or not isinstance(body.get("content", ""), str | list):
                raise ValueError(f"bad rewrite record (seq {seq})")
            new[seq] = stored_from_row(
                self.session_id, seq, m.role, m.tokens, msg_id, m.created_at, body
            )
        for seq, m in new.items():
            self.messages[seq - 1] = m
        self.dead += 1

    def snapshot_lines(self) -> list[str]:
        """The records of a compacted file that replays to this state."""
        at = ts(self.updated_at)
        head = {
            "k": "h",
            "tenant": self.tenant,
            "sid": self.session_id,
            "at": ts(self.created_at),
            "gen": new_id(),
        }
        lines = [_dumps(head)]
        if self.summary is not None:
            s = self.summary
            rec = {"text": s.text, "covers": s.covers_through_seq, "tokens": s.tokens}
            lines.append(_dumps({"k": "sum", **rec, "at": at, "sat": ts(s.updated_at)}))
        # one batch per idempotency range (so replays still work), single messages otherwise
        keyed = {first: (last, key) for key, (first, last) in self.idempotency.items()}
        seq = 1
        while seq <= self.last_seq:
            last, key = keyed.get(seq, (seq, None))
            rows = [_row(self.messages[s - 1]) for s in range(seq, last + 1)]
            lines.append(_dumps({"k": "b", "m": rows, "i": key, "at": at}))
            seq = last + 1
        if self.expires_at is not None:
            lines.append(_dumps({"k": "exp", "expires_at": ts(self.expires_at), "at": at}))
        lines.append(_dumps({"k": "meta", "metadata": self.metadata, "at": at}))  # last: sets
        return lines  # updated_at back to what it was


def _row(m: StoredMessage) -> list[Any]:
    return [m.seq, m.role, m.tokens, m.id, ts(m.created_at), m.body()]


def _info(s: _State) -> SessionInfo:
    return SessionInfo(
        tenant=s.tenant,
        session_id=s.session_id,
        created_at=s.created_at,
        updated_at=s.updated_at,
        message_count=len(s.messages),
        last_seq=s.last_seq,
        total_tokens=sum(m.tokens for m in s.messages),
        metadata=copy_json(s.metadata),
        expires_at=s.expires_at,
        summary_through_seq=s.summary.covers_through_seq if s.summary else 0,
    )
