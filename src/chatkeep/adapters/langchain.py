"""LangChain: a durable ``BaseChatMessageHistory`` and a lease-serialized history runnable.

::

    from chatkeep.adapters.langchain import ChatKeepMessageHistory, history_factory

    store = chatkeep.open_store()                                 # once per process
    chain = RunnableWithMessageHistory(prompt | llm, history_factory(store), ...)

Every LangChain message type is stored losslessly: the message's own ``message_to_dict`` form
is the stored ``payload`` (``format="langchain"``), next to faithful normalized fields (role,
text, OpenAI-shaped tool calls, ``tool_call_id``, name) that other frameworks read. Messages
written by other frameworks come back as the closest LangChain type.

:func:`with_chatkeep_history` runs a runnable with chatkeep history under the session's turn
lease, so two overlapping turns on one session are serialized instead of losing a message
(``RunnableWithMessageHistory`` re-reads the history when a turn ends and slices the input by
its length, which drops the user message of a turn that overlapped another).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from chatkeep.errors import InvalidInput, InvalidMessage, MissingDependency
from chatkeep.store import AsyncStore, Store
from chatkeep.types import JSONObject, Message, Role, StoredMessage, Window
from chatkeep.validation import check_session_id

try:
    from langchain_core.chat_history import BaseChatMessageHistory
    from langchain_core.messages import (
        AIMessage,
        BaseMessage,
        ChatMessage,
        FunctionMessage,
        HumanMessage,
        SystemMessage,
        ToolMessage,
        message_to_dict,
        messages_from_dict,
    )
except ImportError as exc:  # pragma: no cover - exercised by the import-guard test
    raise MissingDependency(
        "chatkeep.adapters.langchain needs langchain-core: pip install 'chatkeep[langchain]'"
    ) from exc

__all__ = [
    "ChatKeepMessageHistory",
    "from_chatkeep",
    "from_message_dicts",
    "history_factory",
    "to_chatkeep",
    "with_chatkeep_history",
]

AnyStore = Store | AsyncStore
_CHAT_ROLES: dict[str, Role] = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "developer",
}


# -- conversion ------------------------------------------------------------------------------
def _normal_content(content: Any) -> str | list[JSONObject]:
    if isinstance(content, str):
        return content
    parts: list[JSONObject] = []
    for block in content:
        if isinstance(block, str):
            parts.append({"type": "text", "text": block})
        elif isinstance(block, Mapping) and isinstance(block.get("type"), str):
            parts.append(dict(block))
        else:
            parts.append({"type": "unknown", "value": block})
    if all(p["type"] == "text" and isinstance(p.get("text"), str) for p in parts):
        return "".join(str(p["text"]) for p in parts)
    return parts


def _openai_tool_calls(message: AIMessage) -> list[JSONObject] | None:
    calls = [
        {
            "id": call.get("id") or "",
            "type": "function",
            "function": {
                "name": call["name"],
                "arguments": json.dumps(call.get("args", {}), ensure_ascii=False),
            },
        }
        for call in message.tool_calls
    ]
    return calls or None


def to_chatkeep(message: BaseMessage) -> Message:
    """A LangChain message as a chatkeep :class:`~chatkeep.Message`, losslessly.

    The payload is LangChain's own ``message_to_dict`` form; the normalized fields are what
    other frameworks read. Raises :class:`~chatkeep.InvalidMessage` (storing nothing) when the
    message holds something that is not JSON (an arbitrary ``artifact`` object, say).
    """
    if not isinstance(message, BaseMessage):
        raise InvalidMessage(f"expected a LangChain BaseMessage, got {type(message).__name__}")
    try:
        payload = json.loads(json.dumps(message_to_dict(message), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidMessage(
            f"this {type(message).__name__} holds a value that is not JSON ({exc}); chatkeep "
            "stores messages as JSON"
        ) from None
    content = _normal_content(message.content)
    name = message.name or None
    metadata: JSONObject = {}
    if isinstance(message, AIMessage):  # AIMessageChunk too
        return Message(
            "assistant",
            content,
            name=name,
            tool_calls=_openai_tool_calls(message),
            format="langchain",
            payload=payload,
        )
    if isinstance(message, ToolMessage):
        return Message(
            "tool",
            content,
            name=name,
            tool_call_id=message.tool_call_id,
            format="langchain",
            payload=payload,
        )
    if isinstance(message, FunctionMessage):  # the legacy OpenAI "function" role
        return Message(
            "tool",
            content,
            name=name,
            tool_call_id=message.name,
            format="langchain",
            payload=payload,
        )
    role: Role
    if isinstance(message, HumanMessage):
        role = "user"
    elif isinstance(message, SystemMessage):
        dev = message.additional_kwargs.get("__openai_role__") == "developer"
        role = "developer" if dev else "system"
    elif isinstance(message, ChatMessage):
        role = _CHAT_ROLES.get(message.role, "user")
        if message.role not in _CHAT_ROLES:
            metadata["langchain_role"] = message.role
    else:
        role = _CHAT_ROLES.get(message.type, "user")
    return Message(role, content, name=name, metadata=metadata, format="langchain", payload=payload)


def _lc_content(content: str | list[JSONObject]) -> Any:
    return content if isinstance(content, str) else [dict(p) for p in content]


def _lc_tool_calls(calls: list[JSONObject] | None) -> tuple[list[Any], list[Any]]:
    good: list[Any] = []
    bad: list[Any] = []
    for call in calls or []:
        fn = call.get("function") or {}
        raw = fn.get("arguments", "{}")
        try:
            args = json.loads(raw) if isinstance(raw, str) else raw
            if not isinstance(args, dict):
                raise ValueError("arguments are not an object")
        except ValueError as exc:
            bad.append(
                {
                    "name": fn.get("name"),
                    "args": raw if isinstance(raw, str) else json.dumps(raw),
                    "id": call.get("id"),
                    "error": str(exc),
                    "type": "invalid_tool_call",
                }
            )
            continue
        good.append(
            {"name": fn.get("name", ""), "args": args, "id": call.get("id"), "type": "tool_call"}
        )
    return good, bad


def from_chatkeep(message: Message) -> BaseMessage:
    """A chatkeep message as a LangChain message.

    Messages LangChain wrote come back equal to what was stored (same class, ids, tool calls,
    ``additional_kwargs``, ``response_metadata``, ``usage_metadata``). Others are converted
    from the normalized fields; a stored message's chatkeep id becomes the LangChain ``id``.
    """
    if message.format == "langchain" and message.payload is not None:
        try:
            # a copy: some backends (memory://, file://) hand out objects they keep, and
            # LangChain messages share the nested dicts and lists they are built from
            return messages_from_dict([json.loads(json.dumps(message.payload))])[0]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidMessage(f"stored LangChain payload cannot be loaded: {exc}") from exc
    content = _lc_content(message.content)
    msg_id = message.id if isinstance(message, StoredMessage) else None
    role = message.role
    if role == "user":
        return HumanMessage(content=content, name=message.name, id=msg_id)
    if role == "assistant":
        good, bad = _lc_tool_calls(message.tool_calls)
        return AIMessage(
            content=content,
            name=message.name,
            id=msg_id,
            tool_calls=good,
            invalid_tool_calls=bad,
        )
    if role == "tool":
        return ToolMessage(
            content=content,
            tool_call_id=message.tool_call_id or "",
            name=message.name,
            id=msg_id,
        )
    extra = {"__openai_role__": "developer"} if role == "developer" else {}
    return SystemMessage(content=content, name=message.name, id=msg_id, additional_kwargs=extra)


def from_message_dicts(dicts: Iterable[Mapping[str, Any]]) -> list[Message]:
    """chatkeep messages from LangChain's ``message_to_dict`` / ``messages_to_dict`` output
    (what ``FileChatMessageHistory`` and the SQL/Redis histories store), for importing an
    existing LangChain history into chatkeep. Every dict is checked before any is returned."""
    out: list[Message] = []
    for i, d in enumerate(dicts):
        if not isinstance(d, Mapping) or "type" not in d or "data" not in d:
            raise InvalidMessage(f"item {i} is not a LangChain message dict (type + data)")
        try:
            lc = messages_from_dict([dict(d)])[0]
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidMessage(f"item {i} is not a valid LangChain message: {exc}") from None
        out.append(to_chatkeep(lc))
    return out


def window_messages(window: Window) -> list[BaseMessage]:
    """A chatkeep :class:`~chatkeep.Window` as LangChain messages (summary as a system one)."""
    out = [from_chatkeep(m) for m in window.system]
    if window.summary is not None:
        out.append(
            SystemMessage(content=f"Summary of the earlier conversation:\n{window.summary.text}")
        )
    out.extend(from_chatkeep(m) for m in window.messages)
    return out


# -- the history ------------------------------------------------------------------------------
class ChatKeepMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history over a chatkeep store (sync or async).

    Cheap and stateless: make one per request; open the store once per process. ``messages``
    is the whole history, or with ``token_limit`` chatkeep's token window (pinned system
    messages and the summary first, never starting on an orphaned tool result, the latest
    user message always included). Over a sync :class:`~chatkeep.Store` the async methods run
    the store calls in a worker thread; over an :class:`~chatkeep.AsyncStore` they await it
    and the sync methods raise (an event loop cannot be blocked on).
    """

    def __init__(self, session_id: str, *, store: AnyStore, token_limit: int | None = None) -> None:
        if not isinstance(store, Store | AsyncStore):
            raise InvalidInput(f"store must be a chatkeep Store or AsyncStore, not {store!r}")
        if token_limit is not None and (not isinstance(token_limit, int) or token_limit < 1):
            raise InvalidInput(f"token_limit must be a positive int or None, got {token_limit!r}")
        self.session_id = check_session_id(session_id)
        self.store = store
        self.token_limit = token_limit

    def _sync(self) -> Store:
        if isinstance(self.store, AsyncStore):
            raise InvalidInput(
                "this history is over an AsyncStore: use aget_messages / aadd_messages / aclear "
                "(or pass a sync Store)"
            )
        return self.store

    @property
    def messages(self) -> list[BaseMessage]:
        store = self._sync()
        if self.token_limit is None:
            return [from_chatkeep(m) for m in store.read(self.session_id)]
        return window_messages(store.window(self.session_id, self.token_limit))

    @messages.setter
    def messages(self, value: list[BaseMessage]) -> None:
        raise AttributeError("use add_messages() / clear(): chatkeep histories are append-only")

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        batch = [to_chatkeep(m) for m in messages]
        if batch:
            self._sync().append(self.session_id, batch)

    def clear(self) -> None:
        self._sync().clear(self.session_id)

    async def aget_messages(self) -> list[BaseMessage]:
        if isinstance(self.store, Store):
            return await asyncio.to_thread(lambda: self.messages)
        if self.token_limit is None:
            return [from_chatkeep(m) for m in await self.store.read(self.session_id)]
        return window_messages(await self.store.window(self.session_id, self.token_limit))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        batch = [to_chatkeep(m) for m in messages]
        if not batch:
            return
        if isinstance(self.store, Store):
            await asyncio.to_thread(self.store.append, self.session_id, batch)
        else:
            await self.store.append(self.session_id, batch)

    async def aclear(self) -> None:
        if isinstance(self.store, Store):
            await asyncio.to_thread(self.store.clear, self.session_id)
        else:
            await self.store.clear(self.session_id)


def history_factory(
    store: AnyStore,
    *,
    token_limit: int | None = None,
    keys: Sequence[str] = ("session_id",),
    separator: str = ":",
) -> Callable[..., ChatKeepMessageHistory]:
    """A ``get_session_history`` for ``RunnableWithMessageHistory`` over one shared store.

    With the default ``keys`` it takes the session id positionally. With several keys (match
    them to ``history_factory_config``) it takes them as keyword arguments and the session id
    is their values joined by ``separator`` in the order given, e.g. ``"u1:t7"``.
    """
    keys = tuple(keys)
    if not keys or not all(isinstance(k, str) and k.isidentifier() for k in keys):
        raise InvalidInput("keys must be a non-empty sequence of identifiers")
    if len(keys) == 1:

        def single(session_id: str) -> ChatKeepMessageHistory:
            return ChatKeepMessageHistory(str(session_id), store=store, token_limit=token_limit)

        return single

    def multi(**values: Any) -> ChatKeepMessageHistory:
        sid = separator.join(str(values[k]) for k in keys)
        return ChatKeepMessageHistory(sid, store=store, token_limit=token_limit)

    multi.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=str) for k in keys]
    )
    return multi


from chatkeep.adapters.langchain_turns import with_chatkeep_history  # noqa: E402
