"""A LangChain chain with durable history: turn 2 runs in a brand-new Python process.

    python examples/langchain_chain.py

A prompt and a chat model wrapped with chatkeep history. Turn 1 uses LangChain's own
``RunnableWithMessageHistory`` with chatkeep's ``get_session_history`` factory; turn 2, in a new
process, uses ``with_chatkeep_history`` (the same keys, plus the session's turn lease and
chatkeep's token window) and the model still gets turn 1. The history lives in the store
(``$CHATKEEP_URL``, default ``sqlite:///chatkeep.db``).

Offline: the model is LangChain's ``FakeListChatModel`` (canned replies, no network); the lines
starting with ``model got`` show exactly what chatkeep handed it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from typing import Any

from langchain_core.language_models import FakeListChatModel
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables import RunnableLambda
from langchain_core.runnables.history import RunnableWithMessageHistory

import chatkeep
from chatkeep.adapters.langchain import history_factory, with_chatkeep_history

SESSION = "langchain-demo"
CONFIG: Any = {"configurable": {"session_id": SESSION}}
prompt = ChatPromptTemplate.from_messages(
    [("system", "You are a helpful bot."), MessagesPlaceholder("history"), ("human", "{question}")]
)


def show(value: Any) -> Any:
    for m in value.to_messages():
        print(f"  [pid {os.getpid()}] model got {m.type}: {m.content}")
    return value


def model(*replies: str) -> FakeListChatModel:
    return FakeListChatModel(responses=list(replies))


def turn_one(store: chatkeep.Store) -> None:
    with warnings.catch_warnings():  # deprecated in langchain-core 1.3.3 (for LangGraph)
        warnings.simplefilter("ignore")
        chain = RunnableWithMessageHistory(
            prompt | RunnableLambda(show) | model("Nice to meet you, Ada."),
            history_factory(store),
            input_messages_key="question",
            history_messages_key="history",
        )
    reply = chain.invoke({"question": "Hi! My name is Ada."}, CONFIG)
    print(f"  [pid {os.getpid()}] bot: {reply.content}")


def turn_two(store: chatkeep.Store) -> None:
    chain = with_chatkeep_history(
        prompt | RunnableLambda(show) | model("Your name is Ada."),
        store=store,
        token_limit=3000,
        input_messages_key="question",
        history_messages_key="history",
    )
    reply = chain.invoke({"question": "What is my name?"}, CONFIG)
    print(f"  [pid {os.getpid()}] bot: {reply.content}")


def main() -> None:
    with chatkeep.open_store() as store:
        if sys.argv[1:] == ["--turn-two"]:
            turn_two(store)
            return
        store.clear(SESSION)  # a fresh demo each run
        print("Turn 1, in this process:")
        turn_one(store)
    print("Turn 2, in a brand-new Python process:")
    subprocess.run([sys.executable, __file__, "--turn-two"], check=True)
    with chatkeep.open_store() as store:
        print(f"The session holds {len(store.read(SESSION))} messages in {store.url}")


if __name__ == "__main__":
    main()
