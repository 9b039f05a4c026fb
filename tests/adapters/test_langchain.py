"""LangChain adapter: lossless history on every backend, sync and async, and the factory."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    ToolMessage,
    ToolMessageChunk,
    messages_to_dict,
)
from langchain_core.runnables import ConfigurableFieldSpec, RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

import chatkeep
from adapters.support import durable, open_async, run_py
from chatkeep import InvalidInput, InvalidMessage, Message
from chatkeep.adapters.langchain import (
    ChatKeepMessageHistory,
    from_chatkeep,
    from_message_dicts,
    history_factory,
    to_chatkeep,
)

pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.LangChainDeprecationWarning")


def every_message_type() -> list[BaseMessage]:
    return [
        SystemMessage("You are terse.", id="s1", additional_kwargs={"k": [1, 2]}),
        SystemMessage("dev rules", additional_kwargs={"__openai_role__": "developer"}),
        HumanMessage(
            [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}],
            name="ada",
            id="h1",
        ),
        AIMessage(
            "calling",
            id="a1",
            tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "c1"}],
            invalid_tool_calls=[{"name": "bad", "args": "{", "id": "c2", "error": "json"}],
            additional_kwargs={"refusal": None},
            response_metadata={"model_name": "m", "finish_reason": "tool_calls"},
            usage_metadata={"input_tokens": 3, "output_tokens": 4, "total_tokens": 7},
        ),
        ToolMessage("sunny", tool_call_id="c1", name="weather", status="success", artifact=[1]),
        FunctionMessage("42", name="legacy_fn"),
        ChatMessage("critique", role="critic"),
        AIMessageChunk("partial", id="a2", response_metadata={"x": 1}),
        HumanMessageChunk("chunk"),
        ToolMessageChunk("tool chunk", tool_call_id="c9"),
        AIMessage("done."),
    ]


def test_every_message_type_round_trips_exactly(sync_store: chatkeep.Store) -> None:
    history = ChatKeepMessageHistory("lc-1", store=sync_store)
    sent = every_message_type()
    history.add_messages(sent)
    fresh = ChatKeepMessageHistory("lc-1", store=sync_store)  # a new object: nothing cached
    got = fresh.messages
    assert got == sent
    assert [type(m) for m in got] == [type(m) for m in sent]
    assert messages_to_dict(got) == messages_to_dict(sent)


def test_async_methods_over_an_async_store(url: str) -> None:
    async def main() -> tuple[list[BaseMessage], list[BaseMessage]]:
        async with await open_async(url) as store:
            history = ChatKeepMessageHistory("lc-a", store=store)
            await history.aadd_messages(every_message_type())
            got = await ChatKeepMessageHistory("lc-a", store=store).aget_messages()
            await history.aclear()
            return got, await history.aget_messages()

    got, after = asyncio.run(main())
    assert got == every_message_type()
    assert after == []


def test_async_methods_over_a_sync_store_run_off_the_loop(sync_store: chatkeep.Store) -> None:
    history = ChatKeepMessageHistory("lc-s", store=sync_store)

    async def main() -> list[BaseMessage]:
        await history.aadd_messages([HumanMessage("hi"), AIMessage("hello")])
        return await history.aget_messages()

    assert asyncio.run(main()) == [HumanMessage("hi"), AIMessage("hello")]
    asyncio.run(history.aclear())
    assert history.messages == []


def test_sync_methods_over_an_async_store_say_what_to_do(url: str) -> None:
    async def main() -> None:
        async with await open_async(url) as store:
            with pytest.raises(InvalidInput, match="aget_messages"):
                _ = ChatKeepMessageHistory("x", store=store).messages

    asyncio.run(main())


def test_normalized_fields_are_faithful(sync_store: chatkeep.Store) -> None:
    ChatKeepMessageHistory("lc-n", store=sync_store).add_messages(every_message_type())
    rows = sync_store.read("lc-n")
    assert all(r.format == "langchain" and r.payload for r in rows)
    assert [r.role for r in rows] == [
        "system", "developer", "user", "assistant", "tool", "tool", "user",
        "assistant", "user", "tool", "assistant",
    ]  # fmt: skip
    assert rows[0].text == "You are terse."
    assert rows[2].name == "ada" and rows[2].content[1]["type"] == "image_url"  # type: ignore[index]
    assert rows[3].tool_calls == [
        {
            "id": "c1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
        }
    ]
    assert rows[4].tool_call_id == "c1" and rows[4].text == "sunny"
    assert rows[5].tool_call_id == "legacy_fn"
    assert rows[6].metadata == {"langchain_role": "critic"}


def test_messages_from_other_frameworks_convert_faithfully(sync_store: chatkeep.Store) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    broken = {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{"}}
    sync_store.append(
        "native",
        [
            Message.system("sys"),
            Message("developer", "dev"),
            Message.user("q", name="ada"),
            Message.assistant("", tool_calls=[call, broken]),
            Message.tool("r", tool_call_id="c1"),
            Message.assistant("answer"),
        ],
    )
    got = ChatKeepMessageHistory("native", store=sync_store).messages
    rows = sync_store.read("native")
    assert [type(m) for m in got] == [
        SystemMessage, SystemMessage, HumanMessage, AIMessage, ToolMessage, AIMessage,
    ]  # fmt: skip
    assert got[1].additional_kwargs == {"__openai_role__": "developer"}
    assert got[2].name == "ada" and got[2].content == "q"
    ai = got[3]
    assert isinstance(ai, AIMessage)
    assert ai.tool_calls == [{"name": "f", "args": {"a": 1}, "id": "c1", "type": "tool_call"}]
    assert [c["id"] for c in ai.invalid_tool_calls] == ["c2"]
    assert isinstance(got[4], ToolMessage) and got[4].tool_call_id == "c1"
    assert [m.id for m in got] == [r.id for r in rows]


def test_a_non_json_message_is_refused_and_nothing_stored(sync_store: chatkeep.Store) -> None:
    history = ChatKeepMessageHistory("bad", store=sync_store)
    with pytest.raises(InvalidMessage, match="not JSON"):
        history.add_messages(
            [HumanMessage("ok"), ToolMessage("r", tool_call_id="c", artifact=object())]
        )
    assert sync_store.read("bad") == []


def test_importing_langchain_message_dicts(sync_store: chatkeep.Store, tmp_path: Any) -> None:
    """The file a FileChatMessageHistory writes is ``messages_to_dict`` output."""
    path = tmp_path / "history.json"
    path.write_text(json.dumps(messages_to_dict(every_message_type())))
    messages = from_message_dicts(json.loads(path.read_text()))
    sync_store.append("imported", messages)
    assert ChatKeepMessageHistory("imported", store=sync_store).messages == every_message_type()
    with pytest.raises(InvalidMessage, match="item 1"):
        from_message_dicts([messages_to_dict([HumanMessage("x")])[0], {"type": "human"}])
    with pytest.raises(InvalidMessage, match="item 0"):
        from_message_dicts([{"type": "nope", "data": {"content": "x"}}])


def test_conversion_functions_round_trip_without_a_store() -> None:
    for m in every_message_type():
        assert from_chatkeep(to_chatkeep(m)) == m
    with pytest.raises(InvalidMessage):
        to_chatkeep("hi")  # type: ignore[arg-type]


def test_bad_arguments_are_refused(sync_store: chatkeep.Store) -> None:
    with pytest.raises(InvalidInput):
        ChatKeepMessageHistory("x", store="sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ChatKeepMessageHistory("x", store=sync_store, token_limit=0)
    with pytest.raises(chatkeep.InvalidSessionId):
        ChatKeepMessageHistory("", store=sync_store)
    with pytest.raises(AttributeError):
        ChatKeepMessageHistory("x", store=sync_store).messages = []


def answer_from_history(messages: list[BaseMessage]) -> AIMessage:
    """An offline 'model': says how many messages it got and which questions came before."""
    asked = [str(m.content) for m in messages[:-1] if isinstance(m, HumanMessage)]
    return AIMessage(f"{len(messages)} messages; earlier: {asked}")


def test_runnable_with_message_history_single_key(sync_store: chatkeep.Store) -> None:
    chain = RunnableWithMessageHistory(
        RunnableLambda(answer_from_history), history_factory(sync_store)
    )
    cfg: Any = {"configurable": {"session_id": "rw-1"}}
    assert chain.invoke("first", cfg).content == "1 messages; earlier: []"
    assert chain.invoke("second", cfg).content == "3 messages; earlier: ['first']"
    assert [m.text for m in sync_store.read("rw-1")] == [
        "first", "1 messages; earlier: []", "second", "3 messages; earlier: ['first']",
    ]  # fmt: skip


def test_runnable_with_message_history_multi_key(sync_store: chatkeep.Store) -> None:
    chain = RunnableWithMessageHistory(
        RunnableLambda(answer_from_history),
        history_factory(sync_store, keys=("user_id", "thread_id")),
        history_factory_config=[
            ConfigurableFieldSpec(id="user_id", annotation=str, is_shared=True),
            ConfigurableFieldSpec(id="thread_id", annotation=str, is_shared=True),
        ],
    )
    chain.invoke("hi", {"configurable": {"user_id": "u1", "thread_id": "t1"}})
    chain.invoke("other", {"configurable": {"user_id": "u1", "thread_id": "t2"}})
    assert [m.text for m in sync_store.read("u1:t1")] == ["hi", "1 messages; earlier: []"]
    assert [m.text for m in sync_store.read("u1:t2")] == ["other", "1 messages; earlier: []"]


def test_runnable_with_message_history_async(url: str) -> None:
    async def main() -> list[str]:
        async with await open_async(url) as store:
            chain = RunnableWithMessageHistory(
                RunnableLambda(answer_from_history), history_factory(store)
            )
            cfg: Any = {"configurable": {"session_id": "rw-a"}}
            await chain.ainvoke("first", cfg)
            await chain.ainvoke("second", cfg)
            return [m.text for m in await store.read("rw-a")]

    assert asyncio.run(main()) == [
        "first", "1 messages; earlier: []", "second", "3 messages; earlier: ['first']",
    ]  # fmt: skip


def test_a_new_process_continues_the_conversation(url: str) -> None:
    """RunnableWithMessageHistory.invoke here, then a brand-new Python process continues."""
    durable(url)
    with chatkeep.open_store(url) as store:
        chain = RunnableWithMessageHistory(
            RunnableLambda(answer_from_history), history_factory(store)
        )
        cfg: Any = {"configurable": {"session_id": "proc"}}
        chain.invoke("My name is Ada.", cfg)
        chain.invoke(
            [HumanMessage("Call a tool")],
            cfg,
        )
    out = run_py(
        """
        import sys, json, warnings
        warnings.simplefilter("ignore")
        import chatkeep
        from langchain_core.messages import AIMessage, HumanMessage
        from langchain_core.runnables import RunnableLambda
        from langchain_core.runnables.history import RunnableWithMessageHistory
        from chatkeep.adapters.langchain import history_factory
        seen = []
        def model(messages):
            seen.extend(messages)
            return AIMessage("third answer")
        with chatkeep.open_store(sys.argv[1]) as store:
            chain = RunnableWithMessageHistory(RunnableLambda(model), history_factory(store))
            chain.invoke("What is my name?", {"configurable": {"session_id": "proc"}})
        print(json.dumps([[type(m).__name__, m.content] for m in seen]))
        """,
        url,
    )
    seen = json.loads(out)
    assert seen == [
        ["HumanMessage", "My name is Ada."],
        ["AIMessage", "1 messages; earlier: []"],
        ["HumanMessage", "Call a tool"],
        ["AIMessage", "3 messages; earlier: ['My name is Ada.']"],
        ["HumanMessage", "What is my name?"],
    ]
    with chatkeep.open_store(url) as store:
        assert [m.text for m in store.read("proc")][-2:] == ["What is my name?", "third answer"]


def test_changing_returned_messages_changes_nothing_stored(sync_store: chatkeep.Store) -> None:
    history = ChatKeepMessageHistory("m", store=sync_store)
    sent = AIMessage(
        "hi",
        additional_kwargs={"a": [1]},
        tool_calls=[{"name": "f", "args": {"k": [1]}, "id": "c"}],
    )
    history.add_messages([sent])
    got = history.messages[0]
    assert isinstance(got, AIMessage)
    got.additional_kwargs["a"].append(2)
    got.tool_calls[0]["args"]["k"].append(2)
    assert history.messages == [sent]
