"""Copies that cut returned objects loose from a backend's in-process state.

``memory://`` keeps its sessions as Python objects, and ``file://`` caches the sessions it has
read. The dataclasses they hand out are frozen, but a message's content parts, tool calls,
metadata and payload are plain lists and dicts: returning the cached ones would let a caller
change stored data by mutating what ``read()`` gave it. These helpers copy exactly the mutable
parts, for all the messages of one call in one ``marshal`` round trip. A plain text message (the
hot path of every window) has none and is returned as it is, and so is a window or an append
result holding only such messages.
"""

from __future__ import annotations

import marshal
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from chatkeep.types import (
    AppendResult,
    SessionInfo,
    StoredMessage,
    Window,
    stored_with_parts,
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


def _plain(m: StoredMessage) -> bool:
    return type(m.content) is str and m.tool_calls is None and not m.metadata and m.payload is None


def detach(m: StoredMessage) -> StoredMessage:
    """``m`` with its own copies of every mutable field (``m`` itself when it has none)."""
    return m if _plain(m) else detach_all((m,))[0]


def detach_all(messages: Iterable[StoredMessage]) -> list[StoredMessage]:
    """The messages with their own copies of every mutable field; the ones with none are
    returned as they are, and the others' parts are copied in one C-level round trip."""
    out = list(messages)
    rich = [i for i, m in enumerate(out) if not _plain(m)]
    if rich:
        parts = _clone(
            [[m.content, m.tool_calls, m.metadata, m.payload] for m in map(out.__getitem__, rich)]
        )
        for i, (content, tool_calls, metadata, payload) in zip(rich, parts, strict=True):
            out[i] = stored_with_parts(out[i], content, tool_calls, metadata, payload)
    return out


def _detached(messages: tuple[StoredMessage, ...]) -> tuple[StoredMessage, ...]:
    return messages if all(map(_plain, messages)) else tuple(detach_all(messages))


def detach_window(w: Window) -> Window:
    system, messages = _detached(w.system), _detached(w.messages)
    if system is w.system and messages is w.messages:
        return w  # frozen, and nothing in it is mutable
    return replace(w, system=system, messages=messages)


def detach_result(r: AppendResult) -> AppendResult:
    messages = _detached(r.messages)
    return r if messages is r.messages else replace(r, messages=messages)


def detach_info(info: SessionInfo) -> SessionInfo:
    return replace(info, metadata=copy_json(info.metadata)) if info.metadata else info
