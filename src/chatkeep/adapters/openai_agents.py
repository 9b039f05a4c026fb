"""OpenAI Agents SDK: ``ChatKeepSession``, a durable ``Session`` over any chatkeep store.

::

    from chatkeep.adapters.openai_agents import ChatKeepSession

    store = await chatkeep.open_async_store()      # once per process (or a sync open_store())
    result = await Runner.run(agent, "Hi", session=ChatKeepSession("user-42", store=store))

Items are stored verbatim (``format="openai-agents"``, the item dict as the payload) next to
faithful normalized fields: a user/system/developer/assistant message keeps its role and text,
a ``function_call`` becomes an assistant tool call, a ``function_call_output`` a tool message.
Other item types (reasoning, hosted tool calls) are stored as assistant messages with empty
text and their type in ``metadata["item_type"]``.

``get_items(limit)`` returns the newest ``limit`` items in order but never starts on a tool
output whose call was cut off (the SDK's ``SQLiteSession`` can, openai-agents-python#4322), and
``token_budget`` serves the history from chatkeep's token window instead of a count.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chatkeep.errors import InvalidInput, InvalidMessage, MissingDependency
from chatkeep.store import AsyncStore, Store
from chatkeep.types import JSONObject, Message
from chatkeep.validation import check_session_id

try:
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as exc:  # pragma: no cover - exercised by the import-guard test
    raise MissingDependency(
        "chatkeep.adapters.openai_agents needs openai-agents: pip install 'chatkeep[agents]'"
    ) from exc

__all__ = ["ChatKeepSession", "item_from_message", "item_to_message"]

Item = dict[str, Any]
_MESSAGE_ROLES = frozenset({"user", "system", "developer", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
_FORMAT = "openai-agents"
_FRESH_ROWS = frozenset({"sqlite"})  # backends whose reads return objects nothing else holds


# -- conversion ------------------------------------------------------------------------------
def _normal_parts(content: Any) -> str | list[JSONObject]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidMessage("a message item's content must be text or a list of parts")
    parts: list[JSONObject] = []
    for part in content:
        if not isinstance(part, Mapping):
            raise InvalidMessage("a message item's content parts must be objects")
        kind = part.get("type")
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "refusal":
            parts.append({"type": "text", "text": part.get("refusal", "")})
        else:
            parts.append(dict(part))
    if all(p["type"] == "text" for p in parts):
        return "".join(str(p["text"]) for p in parts)
    return parts


def _output_text(output: Any) -> str | list[JSONObject]:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return _normal_parts(output)
    return json.dumps(output, ensure_ascii=False)


def item_to_message(item: Mapping[str, Any]) -> Message:
    """One Agents SDK input item as a chatkeep message, stored verbatim as its payload."""
    if not isinstance(item, Mapping):
        raise InvalidMessage(f"an Agents item must be a dict, got {type(item).__name__}")
    payload = dict(item)
    kind = item.get("type")
    role = item.get("role")
    kw: dict[str, Any] = {"format": "openai-agents", "payload": payload}
    if kind in (None, "message") and role in _MESSAGE_ROLES:
        return Message(role, _normal_parts(item.get("content", "")), **kw)
    call_id = item.get("call_id")
    if isinstance(kind, str) and kind.endswith("_call_output"):
        if not isinstance(call_id, str) or not call_id:
            raise InvalidMessage(f"a {kind} item needs its call_id")
        return Message("tool", _output_text(item.get("output", "")), tool_call_id=call_id, **kw)
    if kind in ("function_call", "custom_tool_call"):
        if not isinstance(call_id, str) or not call_id:
            raise InvalidMessage(f"a {kind} item needs its call_id")
        args = item.get("arguments", item.get("input", ""))
        call = {
            "id": call_id,
            "type": "function",
            "function": {"name": str(item.get("name", "")), "arguments": str(args)},
        }
        return Message("assistant", "", tool_calls=[call], **kw)
    if not isinstance(kind, str):
        raise InvalidMessage("an Agents item needs a 'type' or a message 'role'")
    return Message("assistant", "", metadata={"item_type": kind}, **kw)


def _input_parts(content: str | list[JSONObject], role: str) -> Any:
    if isinstance(content, str):
        return content
    text_type = "output_text" if role == "assistant" else "input_text"
    return [
        {"type": text_type, "text": p.get("text", "")} if p.get("type") == "text" else dict(p)
        for p in content
    ]


def item_from_message(message: Message) -> list[Item]:
    """The Agents SDK items for a chatkeep message: a copy of its stored item if the SDK
    wrote it, else a faithful conversion of the normalized fields (an assistant message with
    tool calls gives its text, if any, then one ``function_call`` item per call)."""
    if message.format == "openai-agents" and message.payload is not None:
        # a JSON round trip copies a JSON value several times faster than copy.deepcopy
        copied: Item = json.loads(json.dumps(message.payload))
        return [copied]
    return _converted(message)


def _converted(message: Message) -> list[Item]:
    role = message.role
    if role == "tool":
        output = message.content if isinstance(message.content, str) else message.text
        return [{"type": "function_call_output", "call_id": message.tool_call_id, "output": output}]
    items: list[Item] = []
    if role != "assistant" or message.content or not message.tool_calls:
        items.append({"role": role, "content": _input_parts(message.content, role)})
    for call in message.tool_calls or []:
        fn = call.get("function") or {}
        args = fn.get("arguments", "")
        items.append(
            {
                "type": "function_call",
                "call_id": call.get("id", ""),
                "name": fn.get("name", ""),
                "arguments": args if isinstance(args, str) else json.dumps(args),
            }
        )
    return items


def _drop_orphans(items: list[Item]) -> list[Item]:
    """The longest suffix of ``items`` in which every tool output has its call."""
    start = 0
    while True:
        calls: set[str] = set()
        cut = start
        for i in range(start, len(items)):
            item = items[i]
            kind = item.get("type")
            if isinstance(kind, str) and kind.endswith("_call_output"):
                if item.get("call_id") not in calls:
                    cut = i + 1
            elif "call_id" in item:
                calls.add(str(item["call_id"]))
        if cut == start:
            return items[start:]
        start = cut


# -- the session ------------------------------------------------------------------------------
class ChatKeepSession:
    """An Agents SDK ``Session`` over a chatkeep store (sync or async).

    Cheap and stateless, so a fresh one per request is fine; open the store once per
    process. ``session_settings.limit`` (or ``get_items(limit=)``) caps the item count;
    ``token_budget`` returns chatkeep's token window instead (it never starts on an assistant
    item or a tool output and always keeps the latest user message). Over a sync
    :class:`~chatkeep.Store` the store calls run in a worker thread, never on the event loop.
    """

    def __init__(
        self,
        session_id: str,
        *,
        store: Store | AsyncStore,
        token_budget: int | None = None,
        session_settings: SessionSettings | None = None,
    ) -> None:
        if not isinstance(store, Store | AsyncStore):
            raise InvalidInput(f"store must be a chatkeep Store or AsyncStore, not {store!r}")
        if token_budget is not None and (
            not isinstance(token_budget, int) or isinstance(token_budget, bool) or token_budget < 1
        ):
            raise InvalidInput(f"token_budget must be a positive int or None, got {token_budget!r}")
        self.session_id = check_session_id(session_id)
        self.store = store
        self.token_budget = token_budget
        self.session_settings = session_settings or SessionSettings()

    async def _call(self, name: str, *args: Any, **kw: Any) -> Any:
        method: Callable[..., Any] = getattr(self.store, name)
        if isinstance(self.store, AsyncStore):
            return await method(self.session_id, *args, **kw)
        return await asyncio.to_thread(method, self.session_id, *args, **kw)

    def _items(self, row: Message) -> list[Item]:
        # The SQLite backend decodes rows afresh for each read and keeps none, so their stored
        # item is handed over as is (reads are the hot path). Other backends may hand out
        # objects they keep (memory:// and file:// do), so their items are copied.
        if self.store.scheme in _FRESH_ROWS and row.format == "openai-agents" and row.payload:
            return [row.payload]
        return item_from_message(row)

    async def get_items(self, limit: int | None = None) -> list[Item]:
        """The history, oldest first: all items, the newest ``limit`` (never starting on an
        orphaned tool output), or the ``token_budget`` window."""
        limit = resolve_session_limit(limit, self.session_settings)
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
            raise InvalidInput(f"limit must be an int or None, got {limit!r}")
        if limit is not None and limit <= 0:
            return []
        rows: list[Any]
        if self.token_budget is not None:
            window = await self._call("window", self.token_budget, pin_system=False)
            rows = list(window.messages)
        else:  # the SDK's own items come back as they are, without a StoredMessage around them
            rows = await self._call("read_payloads", _FORMAT, limit=limit, newest=limit is not None)
        items: list[Item] = []
        for row in rows:
            if type(row) is dict:
                items.append(row)
            else:
                items += self._items(row)
        if limit is not None:
            items = items[-limit:]
        return _drop_orphans(items)

    async def add_items(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Append items atomically (all or none), each stored verbatim."""
        if isinstance(items, Mapping) or not isinstance(items, Sequence):
            raise InvalidInput("add_items takes a list of items")
        batch = [item_to_message(_plain(item)) for item in items]
        if batch:
            await self._call("append", batch)

    async def pop_item(self) -> Item | None:
        """Remove and return the newest item (None when the session is empty)."""
        row = await self._call("pop")
        if row is None:
            return None
        items = self._items(row)  # one item, unless another framework wrote the row
        return items[-1] if items else None

    async def clear_session(self) -> None:
        await self._call("clear")


def _plain(item: Any) -> Item:
    """A JSON-ready dict for an item (the SDK may hand over pydantic models)."""
    if isinstance(item, Mapping):
        return dict(item)
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        out = dump(exclude_unset=True, mode="json")
        if isinstance(out, dict):
            return out
    raise InvalidMessage(f"an Agents item must be a dict, got {type(item).__name__}")
