"""ChatMessage <-> chatkeep: lossless through every backend, faithful normalized fields."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import (
    AudioBlock,
    CacheControl,
    CachePoint,
    CitableBlock,
    DocumentBlock,
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
    VideoBlock,
)
from llama_index.core.llms import ChatMessage, MessageRole
from openai.types.chat import ChatCompletionMessageToolCall

import chatkeep
from chatkeep import CorruptRecord, Message
from chatkeep.adapters.llamaindex import ChatKeepChatStore, ChatKeepMemory
from chatkeep.adapters.llamaindex_convert import from_chatkeep, to_chatkeep

CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
}


def conversation() -> list[ChatMessage]:
    return [
        ChatMessage(role=MessageRole.SYSTEM, content="Be brief."),
        ChatMessage(role=MessageRole.DEVELOPER, content="dev note"),
        ChatMessage(
            role=MessageRole.USER,
            blocks=[
                TextBlock(text="What is in these?"),
                ImageBlock(image=b"\x89PNG\r\n\x1a\n\x00", image_mimetype="image/png"),
                ImageBlock(url="https://example.org/cat.jpg", detail="low"),
                AudioBlock(audio=b"RIFF\x00\x01", format="wav"),
                VideoBlock(url="https://example.org/v.mp4", fps=2),
                DocumentBlock(data=b"%PDF-1.4 hi", title="doc"),
                CachePoint(cache_control=CacheControl(type="ephemeral", ttl="1h")),
                CitableBlock(title="t", source="s", content=[TextBlock(text="cited")]),
            ],
            additional_kwargs={"name": "ada", "blob": b"\x00\xff", "nested": {"$x": [1, 2.5]}},
        ),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            content=None,
            additional_kwargs={"tool_calls": [CALL]},
        ),
        ChatMessage(
            role=MessageRole.TOOL,
            content='{"temp": 3}',
            additional_kwargs={"tool_call_id": "call_1", "name": "weather"},
        ),
        ChatMessage(
            role=MessageRole.ASSISTANT,
            blocks=[
                ThinkingBlock(content="hmm", num_tokens=3, additional_information={"sig": "x"}),
                ToolCallBlock(tool_call_id="call_2", tool_name="lookup", tool_kwargs={"q": 1}),
            ],
        ),
        ChatMessage(role=MessageRole.CHATBOT, content="chatbot role"),
        ChatMessage(role=MessageRole.MODEL, content="model role"),
        ChatMessage(
            role=MessageRole.FUNCTION, content="fn result", additional_kwargs={"name": "f"}
        ),
        ChatMessage(role=MessageRole.USER, content="nul \x00 emoji \U0001f600 漢字"),
    ]


@pytest.fixture
def ck(url: str) -> Iterator[chatkeep.Store]:
    store = chatkeep.open_store(url)
    yield store
    store.close()


def test_round_trip_is_exact_through_every_backend(ck: chatkeep.Store) -> None:
    original = conversation()
    ChatKeepChatStore(ck).set_messages("s", original)
    assert ChatKeepChatStore(ck).get_messages("s") == original


def test_stored_form_is_plain_versioned_json(ck: chatkeep.Store) -> None:
    ChatKeepChatStore(ck).set_messages("s", conversation())
    for m in ck.read("s"):
        assert m.format == "llamaindex" and m.payload is not None
        assert m.payload["v"] == 1
        text = json.dumps(m.payload)
        assert json.loads(text) == m.payload
        assert "__" not in text  # no pydantic internals, no pickles
    image = ck.read("s")[2].payload["blocks"][1]  # type: ignore[index]
    assert image["block_type"] == "image" and image["image_mimetype"] == "image/png"


def test_normalized_fields_are_faithful(ck: chatkeep.Store) -> None:
    ChatKeepChatStore(ck).set_messages("s", conversation())
    rows = ck.read("s")
    assert [m.role for m in rows] == [
        "system",
        "developer",
        "user",
        "assistant",
        "tool",
        "assistant",
        "assistant",
        "assistant",
        "tool",
        "user",
    ]
    user = rows[2]
    assert user.name == "ada" and isinstance(user.content, list)
    assert user.content[0] == {"type": "text", "text": "What is in these?"}
    assert user.content[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert user.content[2] == {
        "type": "image_url",
        "image_url": {"url": "https://example.org/cat.jpg"},
    }
    assert rows[3].tool_calls == [CALL] and rows[3].content == ""
    assert (rows[4].tool_call_id, rows[4].text) == ("call_1", '{"temp": 3}')
    assert rows[5].tool_calls == [
        {
            "id": "call_2",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": 1}'},
        }
    ]
    assert rows[9].text == "nul \x00 emoji \U0001f600 漢字"
    # tool-call arguments count toward the stored tokens
    bare = ck.count_tokens(Message.assistant(""))
    assert rows[3].tokens > bare + 5


def test_openai_tool_call_objects_become_their_json(ck: chatkeep.Store) -> None:
    call = ChatCompletionMessageToolCall.model_validate(CALL)
    msg = ChatMessage(role="assistant", content="", additional_kwargs={"tool_calls": [call]})
    ChatKeepChatStore(ck).add_message("s", msg)
    (back,) = ChatKeepChatStore(ck).get_messages("s")
    assert back.additional_kwargs["tool_calls"] == [call.model_dump(mode="json")]
    assert ck.read("s")[0].tool_calls == [CALL]


def test_messages_from_other_writers_convert_from_normalized_fields(ck: chatkeep.Store) -> None:
    mem = chatkeep.Memory("s", store=ck)
    mem.add_messages(
        [
            Message.system("rules"),
            Message.user(
                [
                    {"type": "text", "text": "see"},
                    {"type": "image_url", "image_url": {"url": "https://e.org/a.png"}},
                ],
                name="bob",
            ),
            Message.assistant("", tool_calls=[CALL]),
            Message.tool("3 degrees", tool_call_id="call_1"),
            Message.assistant("It is 3 degrees."),
        ]
    )
    got = ChatKeepChatStore(ck).get_messages("s")
    assert [m.role.value for m in got] == ["system", "user", "assistant", "tool", "assistant"]
    assert got[1].additional_kwargs == {"name": "bob"}
    assert isinstance(got[1].blocks[1], ImageBlock)
    assert str(got[1].blocks[1].url) == "https://e.org/a.png"
    assert got[2].additional_kwargs == {"tool_calls": [CALL]}
    assert got[3].additional_kwargs == {"tool_call_id": "call_1"}
    assert got[4].content == "It is 3 degrees."
    # and the other way: what LlamaIndex wrote, chatkeep.Memory reads as OpenAI messages
    ChatKeepMemory.from_defaults(session_id="t", store=ck).put_messages(
        [ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="yo")]
    )
    assert chatkeep.Memory("t", store=ck).messages() == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "yo"},
    ]


def test_unknown_payloads_are_refused_not_skipped() -> None:
    stored = to_chatkeep(ChatMessage(role="user", content="x"))
    assert stored.payload is not None
    future = Message("user", "x", format="llamaindex", payload={**stored.payload, "v": 99})
    with pytest.raises(CorruptRecord, match="version 99"):
        from_chatkeep(future)
    unknown_block = {**stored.payload, "blocks": [{"block_type": "hologram"}]}
    with pytest.raises(CorruptRecord, match="hologram"):
        from_chatkeep(Message("user", "x", format="llamaindex", payload=unknown_block))


def test_a_tool_call_only_assistant_message_has_empty_text_not_an_empty_parts_list() -> None:
    # other readers (LangChain renders content with str()) saw "[]" for such a message
    call = ToolCallBlock(tool_call_id="c1", tool_name="weather", tool_kwargs={"city": "Oslo"})
    msg = to_chatkeep(ChatMessage(role=MessageRole.ASSISTANT, blocks=[call]))
    assert msg.content == "" and msg.text == ""
    assert msg.tool_calls == [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
        }
    ]
