"""The values chatkeep stores and returns.

All of them are frozen dataclasses. A :class:`Message` validates itself when it is built, so
bad input fails before anything touches a store. Timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, cast

from chatkeep.errors import InvalidMessage

Role = Literal["system", "developer", "user", "assistant", "tool"]
ROLES: frozenset[str] = frozenset({"system", "developer", "user", "assistant", "tool"})
FORMATS: frozenset[str] = frozenset({"chatkeep", "langchain", "llamaindex", "openai-agents"})

JSONObject = dict[str, Any]
Content = str | list[JSONObject]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


def _check_text(text: str, what: str) -> None:
    if text.isascii():  # O(1) in CPython, and ASCII text cannot hold a lone surrogate
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidMessage(
            f"{what} is not valid Unicode text (lone surrogate at index {exc.start})"
        ) from None


#: Deepest JSON nesting accepted in content parts, tool calls, metadata and payloads. Far
#: beyond any real message; deeper values would hit recursion limits in JSON encoders and
#: decoders (here, in web frameworks, in drivers) instead of getting a clear error.
MAX_JSON_DEPTH = 100


def _check_depth(value: Any, what: str) -> None:
    """Refuse JSON nested deeper than :data:`MAX_JSON_DEPTH` (iterative: no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, Mapping):
            children: Any = node.values()
        elif isinstance(node, list | tuple):
            children = node
        else:
            continue
        if depth > MAX_JSON_DEPTH:
            raise InvalidMessage(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in children)


def _check_json(value: Any, what: str) -> None:
    _check_depth(value, what)
    try:
        json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError, UnicodeEncodeError) as exc:
        raise InvalidMessage(f"{what} must be JSON-serialisable: {exc}") from None


def _aware_utc(value: datetime, what: str) -> datetime:
    if type(value) is datetime and value.tzinfo is timezone.utc:  # utcnow() and our own reads
        return value
    if not isinstance(value, datetime):
        raise InvalidMessage(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidMessage(f"{what} must be timezone-aware (use datetime.now(timezone.utc))")
    return value.astimezone(timezone.utc)


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message, as an app or framework hands it to chatkeep.

    ``content`` is text or a list of content parts (``{"type": "text", "text": ...}``,
    images, ...). ``tool_calls`` belongs to assistant messages and ``tool_call_id`` to tool
    messages, in OpenAI's shape. ``format`` and ``payload`` hold a framework's own JSON form of
    the message so a round trip through that framework is lossless.
    """

    role: Role
    content: Content = ""
    name: str | None = None
    tool_calls: list[JSONObject] | None = None
    tool_call_id: str | None = None
    metadata: JSONObject = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    format: str = "chatkeep"
    payload: JSONObject | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidMessage(
                f"unknown role {self.role!r}; expected one of {', '.join(sorted(ROLES))}"
            )
        content: Any = self.content  # callers may pass None with tool_calls
        if content is None and self.role == "assistant" and self.tool_calls:
            object.__setattr__(self, "content", "")
            content = ""
        if isinstance(content, str):
            _check_text(content, "content")
        elif isinstance(content, list):
            for i, part in enumerate(content):
                if not isinstance(part, Mapping) or not isinstance(part.get("type"), str):
                    raise InvalidMessage(f"content part {i} must be an object with a string 'type'")
            _check_json(content, "content")
        else:
            raise InvalidMessage(
                f"content must be a string or a list of parts, got {type(content).__name__}"
            )
        if self.name is not None:
            if not isinstance(self.name, str) or not self.name:
                raise InvalidMessage("name must be a non-empty string or None")
            _check_text(self.name, "name")
        if self.tool_calls is not None:
            if self.role != "assistant":
                raise InvalidMessage(f"tool_calls belong to assistant messages, not {self.role}")
            if not isinstance(self.tool_calls, list) or not all(
                isinstance(c, Mapping) for c in self.tool_calls
            ):
                raise InvalidMessage("tool_calls must be a list of objects")
            _check_json(self.tool_calls, "tool_calls")
        if self.role == "tool":
            if not isinstance(self.tool_call_id, str) or not self.tool_call_id:
                raise InvalidMessage("a tool message needs the tool_call_id it answers")
            _check_text(self.tool_call_id, "tool_call_id")
        elif self.tool_call_id is not None:
            raise InvalidMessage(f"tool_call_id belongs to tool messages, not {self.role}")
        if not isinstance(self.metadata, Mapping):
            raise InvalidMessage("metadata must be a JSON object (a dict with string keys)")
        if not all(isinstance(k, str) for k in self.metadata):
            raise InvalidMessage("metadata keys must be strings")
        if self.metadata:
            _check_json(self.metadata, "metadata")
        object.__setattr__(self, "created_at", _aware_utc(self.created_at, "created_at"))
        if self.format not in FORMATS:
            raise InvalidMessage(
                f"unknown format {self.format!r}; expected one of {', '.join(sorted(FORMATS))}"
            )
        if self.payload is not None:
            if not isinstance(self.payload, Mapping):
                raise InvalidMessage("payload must be a JSON object")
            _check_json(self.payload, "payload")

    # -- convenient constructors -------------------------------------------------------------
    @classmethod
    def system(cls, content: Content, **kw: Any) -> Message:
        return cls("system", content, **kw)

    @classmethod
    def user(cls, content: Content, **kw: Any) -> Message:
        return cls("user", content, **kw)

    @classmethod
    def assistant(cls, content: Content = "", **kw: Any) -> Message:
        return cls("assistant", content, **kw)

    @classmethod
    def tool(cls, content: Content, *, tool_call_id: str, **kw: Any) -> Message:
        return cls("tool", content, tool_call_id=tool_call_id, **kw)

    # -- views -------------------------------------------------------------------------------
    @property
    def text(self) -> str:
        """The message's text: the content string, or its text parts joined by newlines."""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(
            str(p.get("text", "")) for p in self.content if p.get("type") in ("text", "input_text")
        )

    def to_openai(self) -> JSONObject:
        """This message as an OpenAI Chat Completions message dict."""
        out: JSONObject = {"role": self.role, "content": self.content}
        if self.name is not None:
            out["name"] = self.name
        if self.tool_calls is not None:
            out["tool_calls"] = self.tool_calls
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out

    def body(self) -> JSONObject:
        """What a store keeps besides role, ids, seq, tokens and time: content and every
        optional field that is set (the stored JSON body)."""
        out = self.to_openai()
        del out["role"]
        if self.metadata:
            out["metadata"] = self.metadata
        if self.format != "chatkeep":
            out["format"] = self.format
        if self.payload is not None:
            out["payload"] = self.payload
        return out

    def to_dict(self) -> JSONObject:
        """A lossless JSON-ready dict (``Message.from_dict`` reverses it)."""
        return {"role": self.role, **self.body(), "created_at": self.created_at.isoformat()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Message:
        """Build a message from ``to_dict()`` output or an OpenAI-style message dict."""
        return cls(**_message_kwargs(data))


def is_plain_text(m: Message) -> bool:
    """True for the common message: text content and no optional field set (its stored body
    is ``{"content": text}`` and it holds nothing mutable)."""
    return (
        type(m.content) is str
        and m.name is None
        and m.tool_calls is None
        and m.tool_call_id is None
        and not m.metadata
        and m.format == "chatkeep"
        and m.payload is None
    )


_MESSAGE_KEYS = frozenset(
    {
        "role",
        "content",
        "name",
        "tool_calls",
        "tool_call_id",
        "metadata",
        "created_at",
        "format",
        "payload",
    }
)


def _message_kwargs(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise InvalidMessage(f"a message must be an object, got {type(data).__name__}")
    kw: dict[str, Any] = {k: v for k, v in data.items() if k in _MESSAGE_KEYS}
    if "role" not in kw:
        raise InvalidMessage("a message needs a 'role'")
    created = kw.get("created_at")
    if isinstance(created, str):
        try:
            kw["created_at"] = datetime.fromisoformat(created)
        except ValueError:
            raise InvalidMessage(f"created_at is not an ISO 8601 timestamp: {created!r}") from None
    elif created is None:
        kw.pop("created_at", None)
    for key in ("metadata",):
        if kw.get(key) is None:
            kw.pop(key, None)
    if kw.get("content") is None and not kw.get("tool_calls"):
        kw["content"] = ""
    return kw


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredMessage(Message):
    """A message as the store keeps it: with its session, 1-based gapless ``seq``, token count
    (counted once, when it was written) and a unique ``id``."""

    session_id: str
    seq: int
    tokens: int
    id: str

    def to_dict(self) -> JSONObject:
        out = Message.to_dict(self)
        out.update(session_id=self.session_id, seq=self.seq, tokens=self.tokens, id=self.id)
        return out

    def message(self) -> Message:
        """The plain :class:`Message` (without the store's fields)."""
        return Message(
            role=self.role,
            content=self.content,
            name=self.name,
            tool_calls=self.tool_calls,
            tool_call_id=self.tool_call_id,
            metadata=self.metadata,
            created_at=self.created_at,
            format=self.format,
            payload=self.payload,
        )


_STORED_FIELDS = (
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "metadata",
    "created_at",
    "format",
    "payload",
    "session_id",
    "seq",
    "tokens",
    "id",
)


def _slot_setters() -> tuple[Any, ...]:
    return tuple(getattr(StoredMessage, name).__set__ for name in _STORED_FIELDS)


(
    _set_role,
    _set_content,
    _set_name,
    _set_tool_calls,
    _set_tool_call_id,
    _set_metadata,
    _set_created_at,
    _set_format,
    _set_payload,
    _set_session_id,
    _set_seq,
    _set_tokens,
    _set_id,
) = _slot_setters()


def stored_from_fields(
    role: str,
    content: Any,
    name: Any,
    tool_calls: Any,
    tool_call_id: Any,
    metadata: Any,
    created_at: datetime,
    fmt: str,
    payload: Any,
    session_id: str,
    seq: int,
    tokens: int,
    msg_id: str,
) -> StoredMessage:
    """A :class:`StoredMessage` from its fields, in declaration order. Sets the slots directly:
    no ``__init__``, no re-validation, so callers pass values that were checked."""
    obj = object.__new__(StoredMessage)
    _set_role(obj, role)
    _set_content(obj, content)
    _set_name(obj, name)
    _set_tool_calls(obj, tool_calls)
    _set_tool_call_id(obj, tool_call_id)
    _set_metadata(obj, metadata)
    _set_created_at(obj, created_at)
    _set_format(obj, fmt)
    _set_payload(obj, payload)
    _set_session_id(obj, session_id)
    _set_seq(obj, seq)
    _set_tokens(obj, tokens)
    _set_id(obj, msg_id)
    return obj


def stored_from_row(
    session_id: str,
    seq: int,
    role: str,
    tokens: int,
    msg_id: str,
    created_at: datetime,
    body: Mapping[str, Any],
) -> StoredMessage:
    """A :class:`StoredMessage` from a row a store validated when it was written.

    Reads are the hot path of every window, so this sets the slots directly instead of
    re-running validation; the caller checks the row's shape.
    """
    get = body.get
    return stored_from_fields(
        role,
        get("content", ""),
        get("name"),
        get("tool_calls"),
        get("tool_call_id"),
        get("metadata") or {},
        created_at,
        get("format", "chatkeep"),
        get("payload"),
        session_id,
        seq,
        tokens,
        msg_id,
    )


def stored_from_message(
    m: Message, session_id: str, seq: int, tokens: int, msg_id: str
) -> StoredMessage:
    """``m`` (already validated) as a :class:`StoredMessage`, sharing its fields."""
    fields = (m.role, m.content, m.name, m.tool_calls, m.tool_call_id, m.metadata, m.created_at)
    return stored_from_fields(*fields, m.format, m.payload, session_id, seq, tokens, msg_id)


def stored_with_parts(
    m: StoredMessage, content: Content, tool_calls: Any, metadata: Any, payload: Any
) -> StoredMessage:
    """``m`` with other content, tool calls, metadata and payload (copies of its own)."""
    return stored_from_fields(
        m.role,
        content,
        m.name,
        tool_calls,
        m.tool_call_id,
        metadata,
        m.created_at,
        m.format,
        payload,
        m.session_id,
        m.seq,
        m.tokens,
        m.id,
    )


def coerce_message(value: Message | Mapping[str, Any]) -> Message:
    """Accept a :class:`Message` or an OpenAI-style dict; anything else is an error."""
    if isinstance(value, StoredMessage):
        return value.message()
    if isinstance(value, Message):
        return value
    if isinstance(value, Mapping):
        return Message.from_dict(value)
    raise InvalidMessage(f"expected a Message or a message dict, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What an append stored. ``replayed`` is true when an idempotency key had been seen
    before: nothing new was stored and the original messages are returned."""

    session_id: str
    first_seq: int
    last_seq: int
    messages: tuple[StoredMessage, ...]
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Summary:
    """A running summary of a session's older messages, through ``covers_through_seq``."""

    text: str
    covers_through_seq: int
    tokens: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SessionInfo:
    tenant: str
    session_id: str
    created_at: datetime
    updated_at: datetime
    message_count: int
    last_seq: int
    total_tokens: int
    metadata: JSONObject = field(default_factory=dict)
    expires_at: datetime | None = None
    summary_through_seq: int = 0

    def to_dict(self) -> JSONObject:
        return {
            "tenant": self.tenant,
            "session_id": self.session_id,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "message_count": self.message_count,
            "last_seq": self.last_seq,
            "total_tokens": self.total_tokens,
            "metadata": self.metadata,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "summary_through_seq": self.summary_through_seq,
        }


@dataclass(frozen=True, slots=True)
class SessionPage:
    """One page of :meth:`Store.sessions`; pass ``next_cursor`` back for the next page."""

    items: tuple[SessionInfo, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Lease:
    """A per-session turn lease. ``token`` is a fencing token: it grows with every grant."""

    session_id: str
    owner: str
    token: int
    expires_at: float  # time.time() seconds


@dataclass(frozen=True, slots=True)
class Window:
    """What the LLM gets: pinned system messages, the summary, then the newest messages.

    ``tokens`` counts everything in the window (system, summary and messages) against
    ``budget``. ``over_budget`` is set only when the latest user message alone (with what must
    come with it) does not fit: it is included anyway, because a window without the current
    question is useless. ``dropped`` counts the session's messages left out (older ones and
    those the summary covers); ``last_seq`` is the session's newest seq when it was read.
    """

    system: tuple[StoredMessage, ...]
    summary: Summary | None
    messages: tuple[StoredMessage, ...]
    tokens: int
    budget: int
    over_budget: bool
    dropped: int
    last_seq: int

    @property
    def all_messages(self) -> tuple[StoredMessage, ...]:
        """Pinned system messages, then the windowed messages (the summary is not a row)."""
        return self.system + self.messages

    def to_openai(self, *, summary_role: Role = "system") -> list[JSONObject]:
        """The window as OpenAI Chat Completions messages, summary included."""
        out = [m.to_openai() for m in self.system]
        if self.summary is not None:
            out.append(
                {
                    "role": summary_role,
                    "content": f"Summary of the earlier conversation:\n{self.summary.text}",
                }
            )
        out.extend(m.to_openai() for m in self.messages)
        return out


def as_message_list(messages: Message | Mapping[str, Any] | Sequence[Any]) -> list[Message]:
    """Normalise one message or a sequence of messages/dicts into a list of ``Message``."""
    if isinstance(messages, Message | Mapping):
        return [coerce_message(cast(Any, messages))]
    if isinstance(messages, str | bytes):
        raise InvalidMessage("expected a Message, a message dict or a list of them, got text")
    return [coerce_message(m) for m in messages]
