"""Non-IO pieces every backend shares: row decoding, cursors, ids, argument checks."""

from __future__ import annotations

import base64
import binascii
import json
import os
from datetime import datetime, timezone
from typing import Any

from chatkeep.errors import ConflictError, CorruptRecord, InvalidInput
from chatkeep.types import (
    ROLES,
    JSONObject,
    Message,
    StoredMessage,
    Summary,
    stored_from_message,
)
from chatkeep.validation import check_session_id

_scan: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner
_fromiso = datetime.fromisoformat


def new_id() -> str:
    """A unique message id (time-ordered is not promised; ``seq`` is the order)."""
    return os.urandom(16).hex()


def encode_cursor(session_id: str) -> str:
    return base64.urlsafe_b64encode(session_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        after = base64.urlsafe_b64decode(padded.encode()).decode()
        check_session_id(after)  # a cursor names a session id; anything else was forged
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(f"invalid sessions cursor {cursor!r}") from None
    return after


def ts(value: datetime) -> str:
    """A UTC timestamp as stored text (ISO 8601, microseconds, sortable)."""
    if value.tzinfo is not timezone.utc:  # messages' own times are UTC already
        value = value.astimezone(timezone.utc)
    # isoformat(timespec="microseconds")'s text, built without its generic formatting (every
    # append stores two timestamps)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%06d+00:00" % (  # noqa: UP031 (faster than format specs)
        value.year,
        value.month,
        value.day,
        value.hour,
        value.minute,
        value.second,
        value.microsecond,
    )


def parse_ts(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise CorruptRecord(f"stored timestamp {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise CorruptRecord(f"stored timestamp {value!r} has no timezone")
    return parsed


def _loads(body: str | bytes) -> Any:
    """One JSON object from a stored body (the encryption wrapper's opened envelopes)."""
    text = body.decode() if isinstance(body, bytes) else body
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("body is not JSON") from None
    if end != len(text) or not isinstance(value, dict):
        raise ValueError("body is not one JSON object")
    return value


def utc(value: datetime) -> datetime:
    # drivers return timezone.utc when the session's time zone is UTC (PostgreSQL: we ask)
    return value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)


class _Building(StoredMessage):
    """A :class:`StoredMessage` under construction: the same slots, but plain attribute
    stores (the frozen dataclass's ``__setattr__``/``__delattr__`` put back to ``object``'s,
    so the interpreter's fast slot stores apply). :func:`decode_row` fills one and then makes
    it a real ``StoredMessage`` by assigning ``__class__`` (allowed: the layouts are the same),
    several times cheaper than calling each slot descriptor's ``__set__``. Nothing outside
    this module ever sees an instance of this class."""

    __slots__ = ()
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__


_new = object.__new__


def decode_row(
    session_id: str,
    seq: int,
    role: str,
    tokens: int,
    msg_id: str,
    created_at: str | datetime,
    body: str | bytes,
) -> StoredMessage:
    """Turn a stored row back into a :class:`StoredMessage`; never skip a bad row silently.

    Rows were validated when written, so only their shape is checked here (reads are the hot
    path); anything that does not decode raises :class:`CorruptRecord`.
    """
    try:  # written out in one function: this runs once per message read
        text = body.decode() if type(body) is bytes else body
        data, end = _scan(text, 0)
        if end != len(text) or type(data) is not dict:
            raise ValueError("body is not one JSON object")
        m: Any = _new(_Building)
        if len(data) == 1 and "content" in data:  # the common body: {"content": ...}
            m.content = content = data["content"]
            m.name = m.tool_calls = m.tool_call_id = m.payload = None
            m.metadata = {}
            m.format = "chatkeep"
        else:
            get = data.get
            m.content = content = get("content", "")
            m.name = get("name")
            m.tool_calls = get("tool_calls")
            m.tool_call_id = get("tool_call_id")
            m.metadata = get("metadata") or {}
            m.format = get("format", "chatkeep")
            m.payload = get("payload")
        if role not in ROLES or not isinstance(content, (str, list)):
            raise TypeError(f"bad role {role!r} or content type {type(content).__name__}")
        m.role = role
        m.created_at = _fromiso(created_at) if type(created_at) is str else utc(created_at)  # type: ignore[arg-type]
        m.session_id = session_id
        m.seq = seq
        m.tokens = tokens
        m.id = msg_id
        m.__class__ = StoredMessage
        built: StoredMessage = m
        return built
    except Exception as exc:
        reason = "body is not JSON" if isinstance(exc, StopIteration) else exc
        raise CorruptRecord(
            f"message seq {seq} of session {session_id!r} cannot be decoded: {reason}"
        ) from exc


def payload_or_row(
    session_id: str,
    fmt: str,
    seq: int,
    role: str,
    tokens: int,
    msg_id: str,
    created_at: str | datetime,
    body: str | bytes,
) -> JSONObject | StoredMessage:
    """:func:`decode_row` for a framework adapter: a message stored with format ``fmt`` and a
    payload comes back as that payload alone (freshly decoded: the caller owns it), any other
    as its :class:`StoredMessage`. No object is built around an item only its payload is
    wanted for, so a whole-history read leaves far fewer objects for the garbage collector."""
    text = body.decode() if type(body) is bytes else body
    try:
        data, end = _scan(text, 0)
    except StopIteration:  # not JSON: decode_row says so
        data, end = None, -1
    if end == len(text) and type(data) is dict and data.get("format") == fmt:
        payload = data.get("payload")
        if (
            type(payload) is dict
            and role in ROLES
            and isinstance(data.get("content", ""), (str, list))
        ):
            return payload
    return decode_row(session_id, seq, role, tokens, msg_id, created_at, body)


def payload_of(m: StoredMessage, fmt: str) -> JSONObject | StoredMessage:
    """:func:`payload_or_row` for a message already decoded (reads return copies: the
    payload is the caller's)."""
    return m.payload if m.format == fmt and type(m.payload) is dict else m


def payloads_of(rows: list[StoredMessage], fmt: str) -> list[JSONObject | StoredMessage]:
    return [m.payload if m.format == fmt and type(m.payload) is dict else m for m in rows]


def stored(
    message: Message, *, session_id: str, seq: int, tokens: int, msg_id: str | None = None
) -> StoredMessage:
    """``message`` (already validated) as stored under ``seq``."""
    return stored_from_message(message, session_id, seq, tokens, msg_id or new_id())


def rewrite_conflict(session_id: str, seq: int) -> ConflictError:
    return ConflictError(
        f"message seq {seq} of session {session_id!r} is not the one this rewrite read (it "
        "was popped, cleared or replaced meanwhile); nothing was rewritten: re-read and retry"
    )


def check_expected(session_id: str, expect_last_seq: int | None, last_seq: int) -> None:
    if expect_last_seq is not None and expect_last_seq != last_seq:
        raise ConflictError(
            f"session {session_id!r} is at seq {last_seq}, not {expect_last_seq}: another "
            "writer appended first; re-read and retry",
            expected=expect_last_seq,
            actual=last_seq,
        )


def check_summary_args(session_id: str, covers_through_seq: int, last_seq: int) -> None:
    if covers_through_seq < 0 or covers_through_seq > last_seq:
        raise InvalidInput(
            f"a summary of session {session_id!r} must cover seqs 0..{last_seq}, "
            f"not {covers_through_seq}"
        )


def summary_of(text: str, covers: int, tokens: int, updated_at: datetime) -> Summary:
    return Summary(text=text, covers_through_seq=covers, tokens=tokens, updated_at=updated_at)
