"""Non-IO pieces every backend shares: row decoding, cursors, ids, argument checks."""

from __future__ import annotations

import base64
import binascii
import json
import os
from datetime import datetime, timezone
from typing import Any

from chatkeep.errors import ConflictError, CorruptRecord, InvalidInput
from chatkeep.types import ROLES, Message, StoredMessage, Summary, stored_from_row

_scan: Any = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # the C scanner
_fromiso = datetime.fromisoformat


def _loads(body: str | bytes) -> Any:
    text = body.decode() if isinstance(body, bytes) else body
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("body is not JSON") from None
    if end != len(text) or not isinstance(value, dict):
        raise ValueError("body is not one JSON object")
    return value


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
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput(f"invalid sessions cursor {cursor!r}") from None


def ts(value: datetime) -> str:
    """A UTC timestamp as stored text (ISO 8601, microseconds, sortable)."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds")


def parse_ts(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise CorruptRecord(f"stored timestamp {value!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise CorruptRecord(f"stored timestamp {value!r} has no timezone")
    return parsed


def decode_row(
    session_id: str,
    seq: int,
    role: str,
    tokens: int,
    msg_id: str,
    created_at: str,
    body: str | bytes,
) -> StoredMessage:
    """Turn a stored row back into a :class:`StoredMessage`; never skip a bad row silently.

    Rows were validated when written, so only their shape is checked here (reads are the hot
    path); anything that does not decode raises :class:`CorruptRecord`.
    """
    try:
        data = _loads(body)
        content = data.get("content", "")
        if role not in ROLES or not isinstance(content, str | list):
            raise TypeError(f"bad role {role!r} or content type {type(content).__name__}")
        return stored_from_row(session_id, seq, role, tokens, msg_id, _fromiso(created_at), data)
    except Exception as exc:
        raise CorruptRecord(
            f"message seq {seq} of session {session_id!r} cannot be decoded: {exc}"
        ) from exc


def stored(
    message: Message, *, session_id: str, seq: int, tokens: int, msg_id: str | None = None
) -> StoredMessage:
    """``message`` (already validated) as stored under ``seq``."""
    return stored_from_row(
        session_id,
        seq,
        message.role,
        tokens,
        msg_id or new_id(),
        message.created_at,
        message.body(),
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
