"""Copies that cut returned objects loose from a backend's in-process state.

``memory://`` keeps its sessions as Python objects, and ``file://`` caches the sessions it has
read. The dataclasses they hand out are frozen, but a message's content parts, tool calls,
metadata and payload are plain lists and dicts: returning the cached ones would let a caller
change stored data by mutating what ``read()`` gave it. These helpers copy exactly the mutable
parts. A plain text message (the hot path of every window) has none and is returned as it is.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from chatkeep.types import (
    AppendResult,
    JSONObject,
    SessionInfo,
    StoredMessage,
    Window,
    stored_from_row,
)


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists and immutable scalars); much cheaper than
    :func:`copy.deepcopy`, which has to handle cycles and arbitrary objects."""
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value


def _clone(value: Any) -> Any:
    try:
        return marshal.loads(marshal.dumps(value))
    except ValueError:  # a str/int subclass (an enum member, say): the pure-Python copy
        return copy_json(value)


def detach(m: StoredMessage) -> StoredMessage:
    """``m`` with its own copies of every mutable field (``m`` itself when it has none)."""
    if type(m.content) is str and m.tool_calls is None and not m.metadata and m.payload is None:
        return m
    # one C-level round trip copies all four (JSON values only: dicts, lists, scalars)
    content, tool_calls, metadata, payload = _clone(
        (m.content, m.tool_calls, m.metadata, m.payload)
    )
    body: JSONObject = {
        "content": content,
        "name": m.name,
        "tool_calls": tool_calls,
        "tool_call_id": m.tool_call_id,
        "metadata": metadata,
        "format": m.format,
        "payload": payload,
    }
    return stored_from_row(m.session_id, m.seq, m.role, m.tokens, m.id, m.created_at, body)


def detach_all(messages: Iterable[StoredMessage]) -> list[StoredMessage]:
    return [detach(m) for m in messages]


def detach_window(w: Window) -> Window:
    return replace(w, system=tuple(detach_all(w.system)), messages=tuple(detach_all(w.messages)))


def detach_result(r: AppendResult) -> AppendResult:
    return replace(r, messages=tuple(detach_all(r.messages)))


def detach_info(info: SessionInfo) -> SessionInfo:
    return replace(info, metadata=copy_json(info.metadata)) if info.metadata else info
