"""OpenAI Agents SDK adapter: the Session protocol on every backend, Runner.run end to end.

Peer defects reproduced against the installed openai-agents:

* ``SQLiteSession`` defaults to ``:memory:``: a second session object for the same id (the
  next request, another worker) starts empty.
* its count-based ``limit`` returns a ``function_call_output`` whose ``function_call`` was cut
  off (openai-agents-python#4322); sent to OpenAI that is an HTTP 400.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, SQLiteSession, function_tool
from agents.memory import Session, SessionSettings
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

import chatkeep
from adapters.support import durable, open_async, run_py
from chatkeep import InvalidInput, InvalidMessage, Message
from chatkeep.adapters.openai_agents import ChatKeepSession, item_from_message, item_to_message


def tool_turn(n: int) -> list[dict[str, Any]]:
    """One user question answered through a tool call, as the SDK stores it."""
    return [
        {"role": "user", "content": f"weather {n}?"},
        {
            "type": "function_call",
            "call_id": f"c{n}",
            "name": "weather",
            "arguments": json.dumps({"day": n}),
            "id": f"fc{n}",
            "status": "completed",
        },
        {"type": "function_call_output", "call_id": f"c{n}", "output": f"sunny {n}"},
        {
            "id": f"msg{n}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "text": f"It is sunny {n}.",
                    "annotations": [],
                    "logprobs": [],
                }
            ],
        },
    ]


def other_items() -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": "be brief"},
        {"role": "developer", "content": [{"type": "input_text", "text": "dev note"}]},
        {"type": "reasoning", "id": "rs1", "summary": [{"type": "summary_text", "text": "hm"}]},
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "see"},
                {"type": "input_image", "image_url": "data:x", "detail": "auto"},
            ],
        },
    ]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_it_is_an_agents_session(sync_store: chatkeep.Store) -> None:
    session = ChatKeepSession("s", store=sync_store)
    assert isinstance(session, Session)
    assert session.session_id == "s"


def test_items_round_trip_verbatim_sync_store(sync_store: chatkeep.Store) -> None:
    items = tool_turn(1) + other_items() + tool_turn(2)
    run(ChatKeepSession("s", store=sync_store).add_items(items))
    assert run(ChatKeepSession("s", store=sync_store).get_items()) == items


def test_session_protocol_over_an_async_store(url: str) -> None:
    async def main() -> None:
        async with await open_async(url) as store:
            session = ChatKeepSession("s", store=store)
            items = tool_turn(1) + tool_turn(2)
            await session.add_items(items)
            assert await ChatKeepSession("s", store=store).get_items() == items
            assert await session.get_items(limit=3) == items[-3:]
            assert await session.get_items(limit=2) == items[-1:]  # no orphaned output
            assert await session.pop_item() == items[-1]
            assert await session.get_items() == items[:-1]
            await session.clear_session()
            assert await session.get_items() == []
            assert await session.pop_item() is None

    run(main())


def test_normalized_fields_are_faithful(sync_store: chatkeep.Store) -> None:
    run(ChatKeepSession("s", store=sync_store).add_items(tool_turn(1) + other_items()))
    rows = sync_store.read("s")
    assert all(r.format == "openai-agents" for r in rows)
    assert [(r.role, r.text) for r in rows] == [
        ("user", "weather 1?"),
        ("assistant", ""),
        ("tool", "sunny 1"),
        ("assistant", "It is sunny 1."),
        ("system", "be brief"),
        ("developer", "dev note"),
        ("assistant", ""),
        ("user", "see"),
    ]
    assert rows[1].tool_calls == [
        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": '{"day": 1}'}}
    ]
    assert rows[2].tool_call_id == "c1"
    assert rows[6].metadata == {"item_type": "reasoning"}
    assert rows[7].content[1]["type"] == "input_image"  # type: ignore[index]


def test_messages_from_other_frameworks_become_items(sync_store: chatkeep.Store) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    sync_store.append(
        "s",
        [
            Message.system("sys"),
            Message.user("q"),
            Message.assistant("let me check", tool_calls=[call]),
            Message.tool("r", tool_call_id="c1"),
            Message.assistant([{"type": "text", "text": "done"}]),
        ],
    )
    assert run(ChatKeepSession("s", store=sync_store).get_items()) == [
        {"role": "system", "content": "sys"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "let me check"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "c1", "output": "r"},
        {"role": "assistant", "content": [{"type": "output_text", "text": "done"}]},
    ]
    assert item_from_message(Message.assistant("", tool_calls=[call])) == [
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"}
    ]


def test_limit_never_starts_on_an_orphaned_tool_output(sync_store: chatkeep.Store) -> None:
    items = tool_turn(1) + tool_turn(2)
    session = ChatKeepSession("s", store=sync_store)
    run(session.add_items(items))
    for limit in range(1, len(items) + 1):
        got = run(session.get_items(limit=limit))
        assert got == items[len(items) - len(got) :]  # a suffix, in order
        assert len(got) >= limit - 1  # only a cut-off output is dropped
        assert not got or got[0].get("type") != "function_call_output"
    assert run(session.get_items(limit=2)) == items[-1:]  # the output's call was cut off
    assert run(session.get_items(limit=0)) == []


def test_parallel_calls_cut_in_the_middle(sync_store: chatkeep.Store) -> None:
    items = [
        {"role": "user", "content": "two cities"},
        {"type": "function_call", "call_id": "a", "name": "w", "arguments": "{}"},
        {"type": "function_call", "call_id": "b", "name": "w", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "a", "output": "1"},
        {"type": "function_call_output", "call_id": "b", "output": "2"},
        {"role": "assistant", "content": "ok"},
    ]
    session = ChatKeepSession("s", store=sync_store)
    run(session.add_items(items))
    # the newest 4 start on call "b" but hold the output of "a": cutting after that output
    # leaves the output of "b" first, whose call is now cut off too -> only the reply is left
    assert run(session.get_items(limit=4)) == items[-1:]
    assert run(session.get_items(limit=5)) == items[-5:]


def test_session_settings_limit_is_honoured(sync_store: chatkeep.Store) -> None:
    session = ChatKeepSession("s", store=sync_store, session_settings=SessionSettings(limit=4))
    run(session.add_items(tool_turn(1) + tool_turn(2)))
    assert run(session.get_items()) == tool_turn(2)


def test_token_budget_serves_chatkeep_window(sync_store: chatkeep.Store) -> None:
    items = [it for n in range(1, 8) for it in tool_turn(n)]
    run(ChatKeepSession("s", store=sync_store).add_items(items))
    small = run(ChatKeepSession("s", store=sync_store, token_budget=60).get_items())
    big = run(ChatKeepSession("s", store=sync_store, token_budget=100_000).get_items())
    assert big == items
    assert small and small[0]["role"] == "user"  # starts on a question, never mid-tool-call
    assert small == items[len(items) - len(small) :]
    assert len(small) < len(items)
    assert small[:4] == tool_turn(7)  # the latest user message and all after it are kept


def test_bad_input_stores_nothing(sync_store: chatkeep.Store) -> None:
    session = ChatKeepSession("s", store=sync_store)
    with pytest.raises(InvalidMessage, match="call_id"):
        run(session.add_items([{"role": "user", "content": "ok"}, {"type": "function_call"}]))
    with pytest.raises(InvalidMessage):
        run(session.add_items([{"role": "user", "content": "ok"}, {"no": "type"}]))
    with pytest.raises(InvalidInput):
        run(session.add_items({"role": "user", "content": "x"}))  # type: ignore[arg-type]
    assert sync_store.read("s") == []
    with pytest.raises(InvalidInput):
        ChatKeepSession("s", store=sync_store, token_budget=0)
    with pytest.raises(InvalidInput):
        ChatKeepSession("s", store="sqlite:///x.db")  # type: ignore[arg-type]
    with pytest.raises(chatkeep.InvalidSessionId):
        ChatKeepSession("", store=sync_store)
    with pytest.raises(InvalidMessage):
        item_to_message("hi")  # type: ignore[arg-type]


@function_tool
def weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def scripted_model() -> ScriptedModel:
    """An offline model: a tool call, an answer, then answers naming what it was given."""

    def recall(call: Any) -> list[Any]:
        said = [i["content"] for i in call.input if isinstance(i, dict) and i.get("role") == "user"]
        return [assistant_message(f"{len(call.input)} items; you said {said}")]

    return ScriptedModel(
        [
            [function_call("weather", {"city": "Paris"}, call_id="call-1")],
            [assistant_message("It is sunny in Paris.")],
            ModelStep.respond(recall),
        ]
    )


def test_runner_run_with_a_chatkeep_session_then_a_new_process(url: str) -> None:
    durable(url)

    async def first_turns() -> list[Any]:
        with chatkeep.open_store(url) as store:
            agent = Agent(name="bot", model=scripted_model(), tools=[weather])
            r1 = await Runner.run(
                agent, "Weather in Paris?", session=ChatKeepSession("u", store=store)
            )
            r2 = await Runner.run(agent, "Thanks!", session=ChatKeepSession("u", store=store))
            assert r1.final_output == "It is sunny in Paris."
            assert r2.final_output == "5 items; you said ['Weather in Paris?', 'Thanks!']"
            return await ChatKeepSession("u", store=store).get_items()

    items = run(first_turns())
    assert [i.get("type", "message") for i in items] == [
        "message", "function_call", "function_call_output", "message", "message", "message",
    ]  # fmt: skip
    out = run_py(
        """
        import asyncio, json, sys
        import chatkeep
        from agents import Agent, Runner
        from agents.testing import ModelStep, ScriptedModel, assistant_message
        from chatkeep.adapters.openai_agents import ChatKeepSession
        seen = []
        def recall(call):
            seen.extend(call.input)
            return [assistant_message("third")]
        async def main():
            with chatkeep.open_store(sys.argv[1]) as store:
                agent = Agent(name="bot", model=ScriptedModel([ModelStep.respond(recall)]))
                await Runner.run(agent, "Still there?", session=ChatKeepSession("u", store=store))
        asyncio.run(main())
        print(json.dumps(seen))
        """,
        url,
    )
    seen = json.loads(out)
    assert seen[:-1] == items  # every earlier item, verbatim, in order
    assert seen[-1]["content"] == "Still there?"


def test_peer_sqlite_session_default_forgets_between_objects(tmp_path: Path) -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        await SQLiteSession("u").add_items([{"role": "user", "content": "remember me"}])
        peer = await SQLiteSession("u").get_items()  # the next request's session object
        with chatkeep.open_store(f"sqlite:///{tmp_path}/ck.db") as store:
            await ChatKeepSession("u", store=store).add_items(
                [{"role": "user", "content": "remember me"}]
            )
            ours = await ChatKeepSession("u", store=store).get_items()
        with chatkeep.open_store(f"sqlite:///{tmp_path}/ck.db") as store:  # reopened
            reopened = await ChatKeepSession("u", store=store).get_items()
        return peer, ours, reopened

    peer, ours, reopened = run(main())
    assert peer == []
    assert ours == reopened == [{"role": "user", "content": "remember me"}]


def test_peer_sqlite_session_limit_cuts_a_tool_output_from_its_call(tmp_path: Path) -> None:
    """openai-agents-python#4322, with a file-backed SQLiteSession."""
    items = tool_turn(1) + tool_turn(2)

    async def main() -> tuple[list[Any], list[Any]]:
        peer = SQLiteSession("u", tmp_path / "peer.db")
        await peer.add_items(items)
        peer_items = await peer.get_items(limit=2)
        peer.close()
        with chatkeep.open_store(f"sqlite:///{tmp_path}/ck.db") as store:
            await ChatKeepSession("u", store=store).add_items(items)
            ours = await ChatKeepSession("u", store=store).get_items(limit=2)
        return peer_items, ours

    peer_items, ours = run(main())
    assert peer_items[0]["type"] == "function_call_output"  # its function_call is not there
    assert "c2" not in {i.get("call_id") for i in peer_items if i.get("type") == "function_call"}
    assert ours == items[-1:]


def test_changing_returned_items_changes_nothing_stored(sync_store: chatkeep.Store) -> None:
    """The SDK may edit the items it gets; memory:// hands out its own objects, so copies."""
    session = ChatKeepSession("s", store=sync_store)
    run(session.add_items(tool_turn(1)))
    got = run(session.get_items())
    got[0]["content"] = "changed"
    got[3]["content"][0]["text"] = "changed"
    popped = run(session.pop_item())
    popped["status"] = "changed"
    assert run(session.get_items()) == tool_turn(1)[:3]
    assert sync_store.read("s")[0].text == "weather 1?"


def test_runner_run_over_an_async_store(url: str) -> None:
    async def main() -> tuple[str, list[Any]]:
        async with await open_async(url) as store:
            agent = Agent(name="bot", model=scripted_model(), tools=[weather])
            await Runner.run(agent, "Weather in Paris?", session=ChatKeepSession("u", store=store))
            r2 = await Runner.run(agent, "Thanks!", session=ChatKeepSession("u", store=store))
            return str(r2.final_output), [m.role for m in await store.read("u")]

    answer, roles = run(main())
    assert answer == "5 items; you said ['Weather in Paris?', 'Thanks!']"
    assert roles == ["user", "assistant", "tool", "assistant", "user", "assistant"]
