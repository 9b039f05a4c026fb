"""Checks on the session records of a ``chatkeep export`` file, so ``chatkeep import`` can
validate a whole file before it writes anything (a bad session id, metadata, expiry or summary
found half-way through an import used to leave the sessions before it written)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from chatkeep.errors import InvalidInput
from chatkeep.types import Message
from chatkeep.validation import check_no_nul, check_session_id


def read_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` for each non-blank line; every way a line can be
    unreadable (not UTF-8, not JSON, nested too deeply) is an InvalidInput naming the line."""
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            yield n, _parse(path, n, raw)


def _parse(path: Path, n: int, raw: bytes) -> Any:
    if not raw.strip():
        return None
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path}:{n}: not UTF-8 (byte {exc.start}: {exc.reason})") from None
    except RecursionError:
        raise InvalidInput(f"{path}:{n}: JSON nested too deeply") from None
    except ValueError as exc:
        raise InvalidInput(f"{path}:{n}: {exc}") from None


def check_session_record(rec: dict[str, Any]) -> None:
    """Everything ``chatkeep import`` will write from a session record, checked up front."""
    if "session_id" not in rec:
        raise InvalidInput("session record without a session_id")
    check_session_id(rec["session_id"])
    metadata = rec.get("metadata")
    if metadata:
        Message("user", metadata=metadata)  # the store's rules for session metadata
    expires = rec.get("expires_at")
    if expires is not None:
        try:
            when = datetime.fromisoformat(expires)
        except (TypeError, ValueError):
            raise InvalidInput(f"expires_at is not an ISO 8601 timestamp: {expires!r}") from None
        if when.tzinfo is None:
            raise InvalidInput(f"expires_at has no timezone: {expires!r}")
    summary = rec.get("summary")
    if summary is not None:
        if not isinstance(summary, dict) or not isinstance(summary.get("text"), str):
            raise InvalidInput("summary must be an object with a text")
        Message("assistant", summary["text"])
        check_no_nul(summary["text"], "summary text")
        covers = summary.get("covers_through_seq")
        if not isinstance(covers, int) or isinstance(covers, bool) or covers < 0:
            raise InvalidInput("summary covers_through_seq must be an int >= 0")


def check_summary_span(rec: dict[str, Any], messages: int) -> None:
    """A summary may not cover more messages than the session record brings."""
    summary = rec.get("summary")
    if summary is not None and summary["covers_through_seq"] > messages:
        raise InvalidInput(
            f"summary covers through seq {summary['covers_through_seq']}, but the session "
            f"has {messages} messages"
        )
