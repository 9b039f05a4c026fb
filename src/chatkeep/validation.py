"""Checks on identifiers and sizes, shared by every store. Bad input raises before any IO."""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from typing import cast

from chatkeep.errors import InvalidInput, InvalidMessage, InvalidSessionId
from chatkeep.types import Message, is_plain_text

MAX_SESSION_ID_CHARS = 256
MAX_TENANT_CHARS = 64
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
DEFAULT_MAX_BATCH = 1_000


#: Unicode categories Cc (C0/C1 controls, DEL) and Cs (lone surrogates), as one regex: ids are
#: checked on every call, so this is on the hot path.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _check_identifier(
    value: object, what: str, max_chars: int, error: type[InvalidInput] = InvalidSessionId
) -> str:
    if not isinstance(value, str):
        raise error(f"{what} must be a string, got {type(value).__name__}")
    if not value or not value.strip():
        raise error(f"{what} must not be empty or blank")
    if len(value) > max_chars:
        raise error(f"{what} is {len(value)} characters; the limit is {max_chars}")
    bad = _FORBIDDEN.search(value)
    if bad is not None:
        ch, i = bad.group(), bad.start()
        if unicodedata.category(ch) == "Cs":
            raise error(f"{what} has a lone surrogate at index {i}")
        raise error(f"{what} has a control character {ch!r} at index {i}")
    return value


def check_session_id(session_id: object) -> str:
    """Return ``session_id`` if it is a usable session id, else raise ``InvalidSessionId``.

    Any printable Unicode text of 1 to 256 characters is accepted (user ids, emails, UUIDs,
    ``user:42/thread:7`` ...); control characters and blank ids are rejected.
    """
    return _check_identifier(session_id, "session id", MAX_SESSION_ID_CHARS)


def check_tenant(tenant: object) -> str:
    return _check_identifier(tenant, "tenant", MAX_TENANT_CHARS)


def check_prefix(prefix: object) -> None:
    """A ``sessions(prefix=...)`` filter: None, empty, or text under the session-id rules (a
    prefix no id can have is refused rather than sent to a database that may choke on it)."""
    if prefix is not None and prefix != "":
        _check_identifier(prefix, "prefix", MAX_SESSION_ID_CHARS, InvalidInput)


def check_owner(owner: object) -> None:
    """A lease owner: 1 to 256 printable characters, like a session id."""
    _check_identifier(owner, "lease owner", MAX_SESSION_ID_CHARS, InvalidInput)


def check_no_nul(text: str, what: str) -> None:
    """Text kept in a plain text column (summaries): PostgreSQL cannot store U+0000, so no
    backend accepts it. Message content, names and metadata are JSON and keep NUL verbatim."""
    i = text.find("\x00")
    if i >= 0:
        raise InvalidInput(f"{what} has a NUL character (U+0000) at index {i}; it cannot be stored")


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied to every append before anything is written."""

    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_batch: int = DEFAULT_MAX_BATCH

    def check(self, messages: list[Message]) -> list[bytes]:
        """Validate a batch; return each message's encoded body (reused by the backends)."""
        if not messages:
            raise InvalidMessage("append needs at least one message")
        if len(messages) > self.max_batch:
            raise InvalidMessage(
                f"{len(messages)} messages in one append; the limit is {self.max_batch}"
            )
        bodies = []
        for i, m in enumerate(messages):
            body = encode_body(m)
            if len(body) > self.max_message_bytes:
                raise InvalidMessage(
                    f"message {i} is {len(body)} bytes; the limit is {self.max_message_bytes} "
                    "(raise it with max_message_bytes=...)"
                )
            bodies.append(body)
        return bodies


_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_encode_str = json.encoder.encode_basestring  # the same C function _ENCODER uses for strings


def encode_body(m: Message) -> bytes:
    """The message's stored JSON body (everything but role, seq, tokens, ids, timestamps)."""
    content = m.content
    if is_plain_text(m):  # the hot path: the same bytes json.dumps gives, without the dict
        return ('{"content":' + _encode_str(cast(str, content)) + "}").encode()
    return _ENCODER.encode(m.body()).encode()
