"""with_chatkeep_history: overlapping turns keep every message; the window is chatkeep's.

Peer defects reproduced against langchain-core itself (the installed version):

* ``RunnableWithMessageHistory`` drops the user message of a turn that overlaps another turn on
  the same session (it re-reads the history at the end of the turn and slices the input by
  its length) -- with LangChain's own ``InMemoryChatMessageHistory`` and with chatkeep's
  history alike, because the defect is in the runnable.
* ``trim_messages`` can start the window on an orphaned ``ToolMessage`` (langchain#33245) and
  drops the current question when it alone exceeds ``max_tokens``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.language_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    trim_messages,
)
from langchain_core.messages.utils import count_tokens_approximately
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

import chatkeep
from adapters.support import open_async
from chatkeep import InvalidInput, LeaseBusy
from chatkeep.adapters.langchain import (
    ChatKeepMessageHistory,
    history_factory,
    to_chatkeep,
    with_chatkeep_history,
)

pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.LangChainDeprecationWarning")
CFG: Any = {"configurable": {"session_id": "s"}}


def overlapping_turns(chain: Any) -> None:
    """Turn A starts; while its model runs, turn B on the same session starts and finishes."""
    b_done = threading.Event()
    calls: list[str] = []

    def model(messages: list[BaseMessage]) -> AIMessage:
        question = str(messages[-1].content)
        calls.append(question)
        if question == "A":
            b_done.wait(timeout=5)  # peer: B finishes meanwhile; chatkeep: B is queued
        return AIMessage(f"answer to {question} after {len(messages) - 1} messages")

    runnable = chain(RunnableLambda(model))
    a = threading.Thread(target=runnable.invoke, args=("A", CFG))
    a.start()
    while not calls:
        time.sleep(0.005)
    b = threading.Thread(target=lambda: (runnable.invoke("B", CFG), b_done.set()))
    b.start()
    b.join(timeout=0.5)  # with chatkeep B waits for A's lease; let A go on
    b_done.set()
    a.join(timeout=10)
    b.join(timeout=10)


def test_peer_runnable_with_message_history_loses_a_user_message() -> None:
    histories: dict[str, InMemoryChatMessageHistory] = {}

    def get(sid: str) -> InMemoryChatMessageHistory:
        return histories.setdefault(sid, InMemoryChatMessageHistory())

    overlapping_turns(lambda r: RunnableWithMessageHistory(r, get))
    stored = [m.content for m in histories["s"].messages]
    assert stored == ["B", "answer to B after 0 messages", "answer to A after 0 messages"]
    assert "A" not in stored  # the user message of turn A is gone


def test_chatkeep_history_under_the_peer_runnable_loses_it_too(url: str) -> None:
    """The defect is the runnable's: a durable history alone does not fix it."""
    with chatkeep.open_store(url) as store:
        overlapping_turns(lambda r: RunnableWithMessageHistory(r, history_factory(store)))
        assert "A" not in [m.text for m in store.read("s")]


def test_with_chatkeep_history_keeps_both_turns(url: str) -> None:
    with chatkeep.open_store(url) as store:
        overlapping_turns(lambda r: with_chatkeep_history(r, store=store))
        texts = [m.text for m in store.read("s")]
    assert texts == [
        "A", "answer to A after 0 messages", "B", "answer to B after 2 messages",
    ]  # fmt: skip


def test_overlapping_async_turns_on_an_async_store(url: str) -> None:
    async def model(messages: list[BaseMessage]) -> AIMessage:
        await asyncio.sleep(0.05)
        return AIMessage(f"saw {len(messages)}")

    async def main() -> list[str]:
        async with await open_async(url) as store:
            chain = with_chatkeep_history(RunnableLambda(model), store=store)
            await asyncio.gather(*(chain.ainvoke(f"q{i}", CFG) for i in range(4)))
            return [m.text for m in await store.read("s")]

    texts = asyncio.run(main())
    assert sorted(texts[0::2]) == ["q0", "q1", "q2", "q3"]
    assert texts[1::2] == ["saw 1", "saw 3", "saw 5", "saw 7"]  # each saw every earlier turn


def test_ainvoke_over_a_sync_store(sync_store: chatkeep.Store) -> None:
    async def model(messages: list[BaseMessage]) -> AIMessage:
        return AIMessage(f"saw {len(messages)}")

    chain = with_chatkeep_history(RunnableLambda(model), store=sync_store)

    async def main() -> None:
        await asyncio.gather(*(chain.ainvoke(f"q{i}", CFG) for i in range(3)))

    asyncio.run(main())
    assert [m.text for m in sync_store.read("s")][1::2] == ["saw 1", "saw 3", "saw 5"]


def test_reject_policy_fails_fast(sync_store: chatkeep.Store) -> None:
    inside = threading.Event()
    release = threading.Event()

    def model(messages: list[BaseMessage]) -> AIMessage:
        inside.set()
        release.wait(timeout=5)
        return AIMessage("ok")

    chain = with_chatkeep_history(RunnableLambda(model), store=sync_store, lease_policy="reject")
    t = threading.Thread(target=chain.invoke, args=("first", CFG))
    t.start()
    assert inside.wait(timeout=5)
    with pytest.raises(LeaseBusy):
        chain.invoke("second", CFG)
    release.set()
    t.join(timeout=10)
    assert [m.text for m in sync_store.read("s")] == ["first", "ok"]


def test_a_failing_runnable_stores_nothing_and_frees_the_session(
    sync_store: chatkeep.Store,
) -> None:
    def broken(messages: list[BaseMessage]) -> AIMessage:
        raise RuntimeError("LLM down")

    with pytest.raises(RuntimeError):
        with_chatkeep_history(RunnableLambda(broken), store=sync_store).invoke("hi", CFG)
    assert sync_store.read("s") == []
    ok = with_chatkeep_history(RunnableLambda(lambda m: AIMessage("fine")), store=sync_store)
    ok.invoke("again", CFG)  # the lease was released
    assert [m.text for m in sync_store.read("s")] == ["again", "fine"]


def test_prompt_template_with_history_key_and_a_fake_chat_model(
    sync_store: chatkeep.Store,
) -> None:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are terse."), MessagesPlaceholder("history"), ("human", "{question}")]
    )
    seen: list[list[BaseMessage]] = []

    def tap(value: Any) -> Any:
        seen.append(value.to_messages())
        return value

    model = GenericFakeChatModel(messages=iter([AIMessage("one"), AIMessage("two")]))
    chain = with_chatkeep_history(
        prompt | RunnableLambda(tap) | model,
        store=sync_store,
        input_messages_key="question",
        history_messages_key="history",
    )
    chain.invoke({"question": "first?"}, CFG)
    chain.invoke({"question": "second?"}, CFG)
    assert [m.content for m in seen[1]] == ["You are terse.", "first?", "one", "second?"]
    assert [m.text for m in sync_store.read("s")] == ["first?", "one", "second?", "two"]


def test_multi_key_sessions_and_config_errors(sync_store: chatkeep.Store) -> None:
    chain = with_chatkeep_history(
        RunnableLambda(lambda m: AIMessage("ok")),
        store=sync_store,
        session_keys=("user_id", "thread_id"),
    )
    chain.invoke("hi", {"configurable": {"user_id": "u1", "thread_id": "t1"}})
    assert [m.text for m in sync_store.read("u1:t1")] == ["hi", "ok"]
    with pytest.raises(InvalidInput, match="thread_id"):
        chain.invoke("hi", {"configurable": {"user_id": "u1"}})
    with pytest.raises(InvalidInput, match="str, a message or a list"):
        chain.invoke(42, {"configurable": {"user_id": "u1", "thread_id": "t1"}})
    with pytest.raises(InvalidInput):
        with_chatkeep_history(RunnableLambda(lambda m: m), store=sync_store, token_limit=0)


def test_sync_invoke_over_an_async_store_says_what_to_do(url: str) -> None:
    async def main() -> None:
        async with await open_async(url) as store:
            chain = with_chatkeep_history(RunnableLambda(lambda m: AIMessage("x")), store=store)
            with pytest.raises(InvalidInput, match="ainvoke"):
                chain.invoke("hi", CFG)

    asyncio.run(main())


# -- the window --------------------------------------------------------------------------------
def tool_conversation() -> list[BaseMessage]:
    return [
        SystemMessage("You are a weather bot."),
        HumanMessage("what is the weather in paris and london " * 3),
        AIMessage(
            "",
            tool_calls=[
                {"name": "w", "args": {"c": "paris"}, "id": "c1"},
                {"name": "w", "args": {"c": "london"}, "id": "c2"},
            ],
        ),
        ToolMessage("sunny " * 20, tool_call_id="c1"),
        ToolMessage("rain", tool_call_id="c2"),
        AIMessage("Paris is sunny, London rainy."),
    ]


def test_peer_trim_messages_starts_on_an_orphaned_tool_message() -> None:
    """langchain#33245, reproduced with the installed langchain-core."""
    msgs = [*tool_conversation(), HumanMessage("and tomorrow?")]
    trimmed = trim_messages(
        msgs,
        max_tokens=50,
        token_counter=count_tokens_approximately,
        strategy="last",
        include_system=True,
    )
    assert isinstance(trimmed[1], ToolMessage)  # its AIMessage with the tool call is gone
    # and with a current question longer than the budget, the question itself is dropped
    long_q = HumanMessage("tomorrow? " * 40)
    trimmed = trim_messages(
        [*tool_conversation(), long_q],
        max_tokens=60,
        token_counter=count_tokens_approximately,
        strategy="last",
        include_system=True,
        start_on="human",
    )
    assert long_q not in trimmed


@pytest.mark.parametrize("budget", [1, 30, 50, 70, 90, 110, 130, 400])
def test_chatkeep_window_never_orphans_a_tool_result_or_drops_the_question(
    sync_store: chatkeep.Store, budget: int
) -> None:
    seen: list[list[BaseMessage]] = []

    def model(messages: list[BaseMessage]) -> AIMessage:
        seen.append(messages)
        return AIMessage("ok")

    later = [HumanMessage("thanks"), AIMessage("You're welcome.")]
    sync_store.append("s", [to_chatkeep(m) for m in [*tool_conversation(), *later]])
    question = HumanMessage("and what about tomorrow?")
    with_chatkeep_history(RunnableLambda(model), store=sync_store, token_limit=budget).invoke(
        question, CFG
    )
    window = seen[0]
    assert window[0] == SystemMessage("You are a weather bot.")  # pinned
    assert window[-1].content == question.content  # the current question is always there
    rest = window[1:-1]
    assert not rest or isinstance(rest[0], HumanMessage)  # never starts on a tool/AI reply
    call_ids = {c["id"] for m in rest if isinstance(m, AIMessage) for c in m.tool_calls}
    assert all(m.tool_call_id in call_ids for m in rest if isinstance(m, ToolMessage))
    assert rest[-2:] == later  # the latest exchange is kept whole
    WINDOW_SIZES.add(len(window))


WINDOW_SIZES: set[int] = set()


def test_the_budgets_above_really_cut_the_history() -> None:
    """Guards the parametrized test against passing vacuously (it runs first in this file)."""
    assert len(WINDOW_SIZES) >= 2, WINDOW_SIZES


def test_history_token_limit_serves_the_window(sync_store: chatkeep.Store) -> None:
    sync_store.append("s", [to_chatkeep(m) for m in tool_conversation()])
    sync_store.append("s", to_chatkeep(HumanMessage("and tomorrow?")))
    full = ChatKeepMessageHistory("s", store=sync_store).messages
    small = ChatKeepMessageHistory("s", store=sync_store, token_limit=30).messages
    assert len(full) == 7
    assert small == [full[0], full[-1]]
