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
    Message,
    StoredMessage,
    Summary,
    stored_from_message,
    stored_from_row,
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
    try:  # no helper calls but the one that builds the object: this runs per message read
        text = body.decode() if type(body) is bytes else body
        data, end = _scan(text, 0)
        if end != len(text) or type(data) is not dict:
            raise ValueError("body is not one JSON object")
        content = data.get("content", "")
        if role not in ROLES or not isinstance(content, (str, list)):
            raise TypeError(f"bad role {role!r} or content type {type(content).__name__}")
        created = _fromiso(created_at) if type(created_at) is str else utc(created_at)  # type: ignore[arg-type]
        return stored_from_row(session_id, seq, role, tokens, msg_id, created, data)
    except Exception as exc:
        reason = "body is not JSON" if isinstance(exc, StopIteration) else exc
        raise CorruptRecord(
            f"message seq {seq} of session {session_id!r} cannot be decoded: {reason}"
        ) from exc


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
