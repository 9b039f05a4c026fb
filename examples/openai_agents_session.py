"""An OpenAI Agents SDK agent with a durable session: turn 2 runs in a brand-new process.

    python examples/openai_agents_session.py

``Runner.run(agent, text, session=ChatKeepSession(...))``: the SDK reads the session's items
before the model call and appends the new ones after it, here into chatkeep's store
(``$CHATKEEP_URL``, default ``sqlite:///chatkeep.db``) instead of ``SQLiteSession``'s default
in-memory database. Turn 1 calls a tool; turn 2, in a new process, still sees the question, the
tool call and its result.

Offline: the model is the SDK's own ``ScriptedModel`` (a ``Model`` implementation for tests)
whose answers are computed only from the items it is given; no network, no API key.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from typing import Any

from agents import Agent, Runner, function_tool, set_tracing_disabled
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call

import chatkeep
from chatkeep.adapters.openai_agents import ChatKeepSession

SESSION = "agents-demo"
set_tracing_disabled(True)  # offline: no trace export


@function_tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"Sunny, 24 C in {city}."


def answer_from_items(call: Any) -> list[Any]:
    """A stand-in for the LLM: answers from the items the SDK hands it, nothing else."""
    items = [i for i in call.input if isinstance(i, dict)]
    outputs = [str(i["output"]) for i in items if i.get("type") == "function_call_output"]
    said = " ".join(str(i["content"]) for i in items if i.get("role") == "user")
    question = str(items[-1].get("content", "")) if items else ""
    if "which city" in question.lower():
        cities = re.findall(r"weather in (\w+)", said, re.I)
        return [assistant_message(f"You asked about {cities[-1]}." if cities else "No idea.")]
    return [assistant_message(f"The tool says: {outputs[-1]}" if outputs else "Noted.")]


def model_for_turn_one() -> ScriptedModel:
    return ScriptedModel(
        [
            [function_call("weather", {"city": "Paris"}, call_id="call-1")],
            ModelStep.respond(answer_from_items),
        ]
    )


async def take_turn(text: str, model: ScriptedModel) -> None:
    store = await chatkeep.open_async_store()
    async with store:
        agent = Agent(name="assistant", instructions="Be brief.", model=model, tools=[weather])
        result = await Runner.run(agent, text, session=ChatKeepSession(SESSION, store=store))
        items = await ChatKeepSession(SESSION, store=store).get_items()
    pid = os.getpid()
    print(f"  [pid {pid}] user: {text}")
    print(f"  [pid {pid}] agent: {result.final_output}")
    print(f"  [pid {pid}] the session now holds {len(items)} items in {store.url}")


def main() -> None:
    if sys.argv[1:] == ["--turn-two"]:
        model = ScriptedModel([ModelStep.respond(answer_from_items)])
        asyncio.run(take_turn("Which city did I ask about?", model))
        return
    with chatkeep.open_store() as store:
        store.clear(SESSION)  # a fresh demo each run
    print("Turn 1, in this process (the agent calls a tool):")
    asyncio.run(take_turn("What is the weather in Paris?", model_for_turn_one()))
    print("Turn 2, in a brand-new Python process:")
    subprocess.run([sys.executable, __file__, "--turn-two"], check=True)


if __name__ == "__main__":
    main()
