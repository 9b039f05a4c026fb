"""LlamaIndex ``ChatMessage`` <-> chatkeep ``Message``: a lossless, version-stable round trip.

The stored form is chatkeep's own plain JSON, versioned (``{"v": 1, ...}``), kept in
``Message.payload`` with ``format="llamaindex"``:

* ``role``: the ``MessageRole`` value;
* ``blocks``: every content block as ``{"block_type": ..., <field>: <value>}``, fields read one
  by one from the block (bytes as ``{"$bytes": base64}``, URLs and paths as text, nested models
  such as ``CacheControl`` as ``{"$model": name, "fields": {...}}``);
* ``additional_kwargs``: JSON values as they are; pydantic objects in them (e.g. OpenAI tool
  call objects) become their JSON dicts, which LlamaIndex's LLM integrations accept.

Nothing here depends on how a pydantic release serializes models, so the stored form reads back
the same under every pydantic 2.x that llama-index-core admits.

The message's normalized fields (``role``, ``content``, ``name``, ``tool_calls``,
``tool_call_id``) are filled faithfully too, so chatkeep's window counts tool-call arguments and
other frameworks read the conversation. A message without a LlamaIndex payload (written by
another framework or by chatkeep itself) is converted from those normalized fields.

This module imports llama-index-core; :mod:`chatkeep.adapters.llamaindex` imports it lazily.
"""

from __future__ import annotations

import base64
import enum
import io
import json
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from llama_index.core.base.llms import types as li_types
from llama_index.core.base.llms.types import (
    ChatMessage,
    ImageBlock,
    MessageRole,
    TextBlock,
    ToolCallBlock,
)
from pydantic import AnyUrl, BaseModel, ValidationError

from chatkeep.errors import CorruptRecord, InvalidMessage
from chatkeep.types import JSONObject, Message

PAYLOAD_VERSION = 1
FORMAT = "llamaindex"

#: LlamaIndex roles chatkeep does not have, and the normalized role used for them.
_ROLE_TO_CHATKEEP = {
    "system": "system",
    "developer": "developer",
    "user": "user",
    "assistant": "assistant",
    "tool": "tool",
    "function": "tool",
    "chatbot": "assistant",
    "model": "assistant",
}
#: A tool message LlamaIndex wrote without a tool call id (chatkeep requires one).
UNKNOWN_TOOL_CALL_ID = "llamaindex-unknown"


def _block_classes() -> dict[str, type[BaseModel]]:
    out: dict[str, type[BaseModel]] = {}
    for obj in vars(li_types).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            field = obj.model_fields.get("block_type")
            if field is not None and isinstance(field.default, str):
                out[field.default] = obj
    return out


def _model_classes() -> dict[str, type[BaseModel]]:
    return {
        name: obj
        for name, obj in vars(li_types).items()
        if isinstance(obj, type) and issubclass(obj, BaseModel)
    }


_BLOCKS = _block_classes()
_MODELS = _model_classes()


# -- encoding -------------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    """A plain JSON value for ``value`` (see the module docstring for the tags)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, io.IOBase):
        data = value.getvalue() if isinstance(value, io.BytesIO) else value.read()
        return _encode(data if isinstance(data, bytes) else str(data).encode())
    if isinstance(value, enum.Enum):
        return _encode(value.value)
    if isinstance(value, AnyUrl | PurePath):
        return str(value)
    if isinstance(value, BaseModel):
        if "block_type" in type(value).model_fields:
            return encode_block(value)
        if type(value).__name__ in _MODELS and type(value).__module__ == li_types.__name__:
            return {"$model": type(value).__name__, "fields": _fields(value)}
        return _encode(value.model_dump(mode="json"))  # a foreign model: its JSON form
    if isinstance(value, Mapping):
        out = {str(k): _encode(v) for k, v in value.items()}
        if len(out) == 1 and next(iter(out)).startswith("$"):
            return {"$dict": out}  # a user dict that looks like one of our tags
        return out
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    raise TypeError(f"cannot store a {type(value).__name__} in a LlamaIndex message")


def _fields(model: BaseModel) -> JSONObject:
    return {name: _encode(getattr(model, name)) for name in type(model).model_fields}


def encode_block(block: BaseModel) -> JSONObject:
    """A content block as plain JSON: its ``block_type`` and every field."""
    return _fields(block)


def encode_payload(message: ChatMessage) -> JSONObject:
    """The versioned plain-JSON form of ``message`` (what ``Message.payload`` holds)."""
    return {
        "v": PAYLOAD_VERSION,
        "role": message.role.value,
        "blocks": [encode_block(b) for b in message.blocks],
        "additional_kwargs": _encode(message.additional_kwargs),
    }


# -- decoding -------------------------------------------------------------------------------
def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((key, inner),) = value.items()
        if key == "$bytes":
            return base64.b64decode(inner)
        if key == "$dict":
            return {k: _decode(v) for k, v in inner.items()}
    if set(value) == {"$model", "fields"}:
        cls = _MODELS.get(value["$model"])
        if cls is None:
            raise CorruptRecord(f"unknown LlamaIndex model {value['$model']!r} in a message")
        return _build(cls, value["fields"])
    if isinstance(value.get("block_type"), str) and value["block_type"] in _BLOCKS:
        return decode_block(value)
    return {k: _decode(v) for k, v in value.items()}


def _build(cls: type[BaseModel], fields: Mapping[str, Any]) -> BaseModel:
    data = {k: _decode(v) for k, v in fields.items()}
    try:
        return cls.model_validate(data)
    except ValidationError:
        # e.g. a FilePath that no longer exists: give back what was stored, unvalidated
        return cls.model_construct(**data)


def decode_block(data: Mapping[str, Any]) -> BaseModel:
    kind = data.get("block_type")
    cls = _BLOCKS.get(str(kind))
    if cls is None:
        raise CorruptRecord(
            f"unknown LlamaIndex content block {kind!r}; it was written by a newer "
            "llama-index-core: upgrade it to read this message"
        )
    return _build(cls, data)


def decode_payload(payload: Mapping[str, Any]) -> ChatMessage:
    """Rebuild the ``ChatMessage`` that :func:`encode_payload` stored."""
    version = payload.get("v")
    if version != PAYLOAD_VERSION:
        raise CorruptRecord(
            f"LlamaIndex payload version {version!r} is not supported (expected "
            f"{PAYLOAD_VERSION}); upgrade chatkeep to read it"
        )
    kwargs = _decode(payload.get("additional_kwargs") or {})
    return ChatMessage(
        role=MessageRole(payload["role"]),
        blocks=[decode_block(b) for b in payload.get("blocks", [])],
        additional_kwargs=kwargs,
    )


# -- normalized fields ----------------------------------------------------------------------
def _tool_call_dict(call: Any) -> JSONObject | None:
    """One tool call in OpenAI's shape, from an OpenAI object, a dict or a ToolCallBlock."""
    if isinstance(call, ToolCallBlock):
        args = call.tool_kwargs
        return {
            "id": call.tool_call_id or "",
            "type": "function",
            "function": {
                "name": call.tool_name,
                "arguments": args if isinstance(args, str) else json.dumps(args),
            },
        }
    data = _encode(call)
    if not isinstance(data, dict):
        return None
    fn = data.get("function")
    if isinstance(fn, dict):
        args = fn.get("arguments", "")
        return {
            "id": str(data.get("id") or ""),
            "type": "function",
            "function": {
                "name": str(fn.get("name", "")),
                "arguments": args if isinstance(args, str) else json.dumps(args),
            },
        }
    return data


def _content(message: ChatMessage) -> str | list[JSONObject]:
    blocks = message.blocks
    if all(isinstance(b, TextBlock) for b in blocks):
        return "\n".join(b.text for b in blocks)  # type: ignore[union-attr]
    parts: list[JSONObject] = []
    for b in blocks:
        if isinstance(b, TextBlock):
            parts.append({"type": "text", "text": b.text})
        elif isinstance(b, ImageBlock) and (b.url or b.image):
            url = str(b.url) if b.url else f"data:{b.image_mimetype or 'image/png'};base64,"
            if not b.url and isinstance(b.image, bytes):
                url += b.image.decode("ascii", "replace")
            parts.append({"type": "image_url", "image_url": {"url": url}})
        elif isinstance(b, ToolCallBlock):
            continue  # carried by tool_calls
        else:
            text = getattr(b, "content", None) if b.block_type == "thinking" else None
            part: JSONObject = {"type": f"llamaindex_{b.block_type}"}
            if isinstance(text, str):
                part["text"] = text
            parts.append(part)
    if all(p["type"] == "text" for p in parts):  # also no parts at all (only tool calls): ""
        return "\n".join(p["text"] for p in parts)
    return parts


def to_chatkeep(message: Any) -> Message:
    """A chatkeep :class:`~chatkeep.Message` for ``message``: faithful normalized fields plus
    the lossless LlamaIndex payload."""
    if not isinstance(message, ChatMessage):
        raise InvalidMessage(f"expected a LlamaIndex ChatMessage, got {type(message).__name__}")
    kw = message.additional_kwargs
    role = _ROLE_TO_CHATKEEP.get(message.role.value, "user")
    calls: list[JSONObject] = []
    raw_calls = kw.get("tool_calls")
    if isinstance(raw_calls, list):
        calls = [c for c in (_tool_call_dict(x) for x in raw_calls) if c is not None]
    calls += [
        c
        for c in (_tool_call_dict(b) for b in message.blocks if isinstance(b, ToolCallBlock))
        if c is not None
    ]
    name = kw.get("name")
    tool_call_id = None
    if role == "tool":
        tool_call_id = str(kw.get("tool_call_id") or name or UNKNOWN_TOOL_CALL_ID)
    return Message(
        role=role,  # type: ignore[arg-type]
        content=_content(message),
        name=name if isinstance(name, str) and name else None,
        tool_calls=calls if (calls and role == "assistant") else None,
        tool_call_id=tool_call_id,
        format=FORMAT,
        payload=encode_payload(message),
    )


def from_chatkeep(message: Message) -> ChatMessage:
    """The ``ChatMessage`` for a stored message: exact when LlamaIndex wrote it, otherwise
    built from the normalized fields."""
    if message.format == FORMAT and message.payload is not None:
        return decode_payload(message.payload)
    kwargs: JSONObject = {}
    if message.name:
        kwargs["name"] = message.name
    if message.tool_calls:
        kwargs["tool_calls"] = message.tool_calls
    if message.tool_call_id:
        kwargs["tool_call_id"] = message.tool_call_id
    blocks: list[Any] = []
    if isinstance(message.content, str):
        blocks.append(TextBlock(text=message.content))
    else:
        for part in message.content:
            kind = part.get("type")
            if kind in ("text", "input_text") and isinstance(part.get("text"), str):
                blocks.append(TextBlock(text=part["text"]))
            elif kind == "image_url" and isinstance(part.get("image_url"), dict):
                blocks.append(ImageBlock(url=part["image_url"].get("url")))
            else:
                blocks.append(TextBlock(text=json.dumps(part, ensure_ascii=False)))
    return ChatMessage(role=MessageRole(message.role), blocks=blocks, additional_kwargs=kwargs)
