"""One session, every framework: a conversation written through one adapter reads back
faithfully through every other (normalized fields) and exactly through its own.

To add a framework, add one :class:`Framework` to ``FRAMEWORKS``: how to build the reference
conversation as its own objects, write them through its adapter, read them back through its
adapter, and reduce its objects to the neutral shape ``(role, text, tool calls, tool_call_id)``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock

import chatkeep
from chatkeep import Message
from chatkeep.adapters.langchain import ChatKeepMessageHistory
from chatkeep.adapters.llamaindex import ChatKeepChatStore
from chatkeep.adapters.openai_agents import ChatKeepSession

Neutral = tuple[str, str, tuple[tuple[str, str, str], ...], str | None]

#: the reference conversation, in the neutral shape every framework must read back
REFERENCE: list[Neutral] = [
    ("system", "Be brief.", (), None),
    ("user", "Weather in Paris?", (), None),
    ("assistant", "", (("call-1", "weather", '{"city": "Paris"}'),), None),
    ("tool", "sunny", (), "call-1"),
    ("assistant", "It is sunny in Paris.", (), None),
    ("user", "Thanks!", (), None),
]


def _args(raw: Any) -> str:
    return json.dumps(json.loads(raw) if isinstance(raw, str) else raw, sort_keys=True)


@dataclass(frozen=True)
class Framework:
    name: str
    native: Callable[[], list[Any]]  # the reference conversation as this framework's objects
    write: Callable[[chatkeep.Store, str, list[Any]], None]
    read: Callable[[chatkeep.Store, str], list[Any]]
    neutral: Callable[[list[Any]], list[Neutral]]


# -- plain chatkeep --------------------------------------------------------------------------
def ck_native() -> list[Message]:
    call = {
        "id": "call-1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    return [
        Message.system("Be brief."),
        Message.user("Weather in Paris?"),
        Message.assistant("", tool_calls=[call]),
        Message.tool("sunny", tool_call_id="call-1"),
        Message.assistant("It is sunny in Paris."),
        Message.user("Thanks!"),
    ]


def ck_neutral(messages: list[Any]) -> list[Neutral]:
    out: list[Neutral] = []
    for m in messages:
        calls = tuple(
            (c["id"], c["function"]["name"], _args(c["function"]["arguments"]))
            for c in m.tool_calls or []
        )
        out.append((m.role, m.text, calls, m.tool_call_id))
    return out


# -- LangChain -------------------------------------------------------------------------------
def lc_native() -> list[BaseMessage]:
    return [
        SystemMessage("Be brief.", id="lc-0"),
        HumanMessage("Weather in Paris?", id="lc-1"),
        AIMessage(
            "",
            id="lc-2",
            tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call-1"}],
            response_metadata={"model_name": "fake"},
            usage_metadata={"input_tokens": 5, "output_tokens": 3, "total_tokens": 8},
        ),
        ToolMessage("sunny", tool_call_id="call-1", id="lc-3"),
        AIMessage("It is sunny in Paris.", id="lc-4"),
        HumanMessage("Thanks!", id="lc-5"),
    ]


def lc_neutral(messages: list[Any]) -> list[Neutral]:
    roles = {"system": "system", "human": "user", "ai": "assistant", "tool": "tool"}
    out: list[Neutral] = []
    for m in messages:
        calls = tuple((c["id"], c["name"], _args(c["args"])) for c in getattr(m, "tool_calls", []))
        out.append((roles[m.type], str(m.content), calls, getattr(m, "tool_call_id", None)))
    return out


# -- OpenAI Agents SDK -----------------------------------------------------------------------
def agents_native() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "call-1",
            "name": "weather",
            "arguments": '{"city":"Paris"}',
            "id": "fc-1",
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": "call-1", "output": "sunny"},
        {
            "id": "msg-1",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {"type": "output_text", "text": "It is sunny in Paris.", "annotations": []}
            ],
        },
        {"role": "user", "content": "Thanks!"},
    ]


def agents_neutral(items: list[Any]) -> list[Neutral]:
    out: list[Neutral] = []
    for i in items:
        kind = i.get("type", "message")
        if kind == "function_call":
            out.append(("assistant", "", ((i["call_id"], i["name"], _args(i["arguments"])),), None))
        elif kind == "function_call_output":
            out.append(("tool", i["output"], (), i["call_id"]))
        else:
            content = i["content"]
            text = content if isinstance(content, str) else "".join(p["text"] for p in content)
            out.append((i["role"], text, (), None))
    return out


# -- LlamaIndex (ChatKeepChatStore) --------------------------------------------------------
def li_native() -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(role=MessageRole.USER, content="Weather in Paris?"),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[
                ToolCallBlock(
                    tool_call_id="call-1", tool_name="weather", tool_kwargs={"city": "Paris"}
                )
            ],
        ),
        ChatMessage(
            role=MessageRole.TOOL,
            content="sunny",
            additional_kwargs={"tool_call_id": "call-1", "name": "weather"},
        ),
        ChatMessage(role=MessageRole.ASSISTANT, blocks=[TextBlock(text="It is sunny in Paris.")]),
        ChatMessage(role=MessageRole.USER, content="Thanks!"),
    ]


def li_neutral(messages: list[Any]) -> list[Neutral]:
    out: list[Neutral] = []
    for m in messages:
        kw = m.additional_kwargs
        calls = tuple(
            (b.tool_call_id, b.tool_name, _args(b.tool_kwargs))
            for b in m.blocks
            if isinstance(b, ToolCallBlock)
        ) + tuple(
            (c["id"], c["function"]["name"], _args(c["function"]["arguments"]))
            for c in kw.get("tool_calls") or []
        )
        out.append((m.role.value, m.content or "", calls, kw.get("tool_call_id")))
    return out


FRAMEWORKS = [
    Framework(
        "chatkeep",
        ck_native,
        lambda store, sid, msgs: store.append(sid, msgs) and None,
        lambda store, sid: store.read(sid),
        ck_neutral,
    ),
    Framework(
        "langchain",
        lc_native,
        lambda store, sid, msgs: ChatKeepMessageHistory(sid, store=store).add_messages(msgs),
        lambda store, sid: ChatKeepMessageHistory(sid, store=store).messages,
        lc_neutral,
    ),
    Framework(
        "llamaindex",
        li_native,
        lambda store, sid, msgs: ChatKeepChatStore(store).add_messages(sid, msgs),
        lambda store, sid: ChatKeepChatStore(store).get_messages(sid),
        li_neutral,
    ),
    Framework(
        "openai-agents",
        agents_native,
        lambda store, sid, items: asyncio.run(ChatKeepSession(sid, store=store).add_items(items)),
        lambda store, sid: asyncio.run(ChatKeepSession(sid, store=store).get_items()),
        agents_neutral,
    ),
]
BY_NAME = {f.name: f for f in FRAMEWORKS}
NAMES = sorted(BY_NAME)


@pytest.mark.parametrize("framework", NAMES)
def test_each_native_form_is_the_reference(framework: str) -> None:
    fw = BY_NAME[framework]
    assert fw.neutral(fw.native()) == REFERENCE


@pytest.mark.parametrize("writer", NAMES)
@pytest.mark.parametrize("reader", NAMES)
def test_written_by_one_read_faithfully_by_another(
    sync_store: chatkeep.Store, writer: str, reader: str
) -> None:
    w, r = BY_NAME[writer], BY_NAME[reader]
    w.write(sync_store, "shared", w.native())
    assert r.neutral(r.read(sync_store, "shared")) == REFERENCE


@pytest.mark.parametrize("framework", NAMES)
def test_read_back_exactly_through_its_own_adapter(
    sync_store: chatkeep.Store, framework: str
) -> None:
    fw = BY_NAME[framework]
    fw.write(sync_store, "own", fw.native())
    got = fw.read(sync_store, "own")
    if framework == "chatkeep":
        got = [m.message() for m in got]
        expected = fw.native()
        assert [m.to_dict() | {"created_at": 0} for m in got] == [
            m.to_dict() | {"created_at": 0} for m in expected
        ]
    else:
        assert got == fw.native()


def test_a_conversation_continued_by_every_framework_in_turn(sync_store: chatkeep.Store) -> None:
    """LangChain writes a turn, LlamaIndex the tool result, the Agents SDK the next, plain
    chatkeep the next; each reader sees all of it, in order."""
    ChatKeepMessageHistory("mixed", store=sync_store).add_messages(lc_native()[:3])
    ChatKeepChatStore(sync_store).add_messages("mixed", li_native()[3:4])
    asyncio.run(ChatKeepSession("mixed", store=sync_store).add_items(agents_native()[4:5]))
    sync_store.append("mixed", ck_native()[5:])
    for fw in FRAMEWORKS:
        assert fw.neutral(fw.read(sync_store, "mixed")) == REFERENCE, fw.name
