"""LangChain turns under chatkeep's session lease: :func:`with_chatkeep_history`.

``RunnableWithMessageHistory`` reads the history when a turn starts, and again when it ends to
work out which input messages are new (it slices the input by the history's length then). If
another turn on the same session finished in between, that slice is empty and the user message
is never stored. Here a turn is a :meth:`chatkeep.Memory.turn`: the session's lease is held
from reading the window to appending, so overlapping turns queue (or fail fast with
``lease_policy="reject"``) and every message is kept. Import it from
``chatkeep.adapters.langchain``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.runnables import Runnable, RunnableConfig, ensure_config

from chatkeep.adapters.langchain import AnyStore, to_chatkeep, window_messages
from chatkeep.errors import InvalidInput
from chatkeep.memory import AsyncMemory, LeasePolicy, Memory, _MemoryCore
from chatkeep.store import AsyncStore, Store
from chatkeep.types import Message


def _as_messages(value: Any, what: str) -> list[BaseMessage]:
    if isinstance(value, str):
        return [HumanMessage(content=value) if what == "input" else AIMessage(content=value)]
    if isinstance(value, BaseMessage):
        return [value]
    if isinstance(value, list | tuple) and all(isinstance(m, BaseMessage) for m in value):
        return list(value)
    raise InvalidInput(
        f"expected the {what} to be a str, a message or a list of messages, "
        f"got {type(value).__name__}"
    )


class ChatKeepHistoryRunnable(Runnable[Any, Any]):
    """What :func:`with_chatkeep_history` returns; see there."""

    def __init__(
        self,
        runnable: Runnable[Any, Any],
        *,
        store: AnyStore,
        token_limit: int,
        input_messages_key: str | None,
        history_messages_key: str | None,
        output_messages_key: str | None,
        session_keys: Sequence[str],
        separator: str,
        lease_policy: LeasePolicy,
        lease_ttl: float,
        lease_timeout: float,
    ) -> None:
        if not isinstance(store, Store | AsyncStore):
            raise InvalidInput(f"store must be a chatkeep Store or AsyncStore, not {store!r}")
        if not session_keys or not all(isinstance(k, str) for k in session_keys):
            raise InvalidInput("session_keys must be a non-empty sequence of config keys")
        self.runnable = runnable
        self.store = store
        self.input_messages_key = input_messages_key
        self.history_messages_key = history_messages_key
        self.output_messages_key = output_messages_key
        self.session_keys = tuple(session_keys)
        self.separator = separator
        self._memory_kw: dict[str, Any] = {
            "token_limit": token_limit,
            "lease_policy": lease_policy,
            "lease_ttl": lease_ttl,
            "lease_timeout": lease_timeout,
        }
        _MemoryCore("validate-early", **self._memory_kw)

    # -- the pieces shared by invoke and ainvoke ---------------------------------------------
    def _session_id(self, config: RunnableConfig) -> str:
        conf = config.get("configurable") or {}
        missing = [k for k in self.session_keys if k not in conf]
        if missing:
            example = {k: "..." for k in self.session_keys}
            raise InvalidInput(
                f"missing {', '.join(missing)} in config['configurable']; call e.g. "
                f"chain.invoke(input, config={{'configurable': {example}}})"
            )
        return self.separator.join(str(conf[k]) for k in self.session_keys)

    def _new_messages(self, value: Any) -> list[BaseMessage]:
        if self.input_messages_key is not None:
            if not isinstance(value, dict) or self.input_messages_key not in value:
                raise InvalidInput(f"expected a dict input with key {self.input_messages_key!r}")
            value = value[self.input_messages_key]
        return _as_messages(value, "input")

    def _runnable_input(
        self, value: Any, history: list[BaseMessage], new: list[BaseMessage]
    ) -> Any:
        if self.history_messages_key is not None:
            if not isinstance(value, dict):
                raise InvalidInput("history_messages_key needs a dict input")
            return {**value, self.history_messages_key: history}
        if self.input_messages_key is not None:
            return {**value, self.input_messages_key: history + new}
        return history + new

    def _output_messages(self, output: Any) -> list[Message]:
        if isinstance(output, dict):
            key = self.output_messages_key or (next(iter(output)) if len(output) == 1 else None)
            if key is None or key not in output:
                raise InvalidInput("set output_messages_key: the runnable returns a dict")
            output = output[key]
        return [to_chatkeep(m) for m in _as_messages(output, "output")]

    @staticmethod
    def _split(new: list[BaseMessage]) -> tuple[Message | None, list[Message]]:
        converted = [to_chatkeep(m) for m in new]
        return (converted[0] if converted else None), converted[1:]

    # -- Runnable ------------------------------------------------------------------------------
    def invoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        if isinstance(self.store, AsyncStore):
            raise InvalidInput("this runnable is over an AsyncStore: use ainvoke (or a Store)")
        config = ensure_config(config)
        memory = Memory(self._session_id(config), store=self.store, **self._memory_kw)
        new = self._new_messages(input)
        first, rest = self._split(new)
        with memory.turn(first) as turn:
            turn.add(rest)
            assert turn.window is not None
            history = window_messages(turn.window)
            output = self.runnable.invoke(self._runnable_input(input, history, new), config)
            turn.add(self._output_messages(output))
        return output

    async def ainvoke(self, input: Any, config: RunnableConfig | None = None, **kwargs: Any) -> Any:
        config = ensure_config(config)
        sid = self._session_id(config)
        new = self._new_messages(input)
        first, rest = self._split(new)
        if isinstance(self.store, AsyncStore):
            amemory = AsyncMemory(sid, store=self.store, **self._memory_kw)
            async with amemory.turn(first) as aturn:
                aturn.add(rest)
                assert aturn.window is not None
                history = window_messages(aturn.window)
                output = await self.runnable.ainvoke(
                    self._runnable_input(input, history, new), config
                )
                aturn.add(self._output_messages(output))
            return output
        # a sync store: its blocking calls (and the lease wait) run in a worker thread
        memory = Memory(sid, store=self.store, **self._memory_kw)
        turn = memory.turn(first)
        await asyncio.to_thread(turn.__enter__)
        try:
            turn.add(rest)
            assert turn.window is not None
            history = window_messages(turn.window)
            output = await self.runnable.ainvoke(self._runnable_input(input, history, new), config)
            turn.add(self._output_messages(output))
        except BaseException as exc:
            await asyncio.to_thread(turn.__exit__, type(exc), exc, exc.__traceback__)
            raise
        await asyncio.to_thread(turn.__exit__, None, None, None)
        return output


def with_chatkeep_history(
    runnable: Runnable[Any, Any],
    *,
    store: AnyStore,
    token_limit: int = 3000,
    input_messages_key: str | None = None,
    history_messages_key: str | None = None,
    output_messages_key: str | None = None,
    session_keys: Sequence[str] = ("session_id",),
    separator: str = ":",
    lease_policy: LeasePolicy = "queue",
    lease_ttl: float = 120.0,
    lease_timeout: float = 60.0,
) -> ChatKeepHistoryRunnable:
    """``runnable`` with chatkeep history, one lease-serialized turn per call.

    Takes the same keys as ``RunnableWithMessageHistory``. Per call: take the session's lease,
    read chatkeep's ``token_limit`` window (pinned system messages and summary first, never
    starting on an orphaned tool result, the latest user message always kept), call
    ``runnable`` with it, then append the new input messages and the output in one atomic
    write and release the lease. If ``runnable`` raises, nothing is stored. The session id
    comes from ``config["configurable"]``: the ``session_keys`` values joined by
    ``separator``. Over a sync :class:`~chatkeep.Store`, ``ainvoke`` runs the store calls in a
    worker thread; over an :class:`~chatkeep.AsyncStore` only ``ainvoke`` is available.
    """
    return ChatKeepHistoryRunnable(
        runnable,
        store=store,
        token_limit=token_limit,
        input_messages_key=input_messages_key,
        history_messages_key=history_messages_key,
        output_messages_key=output_messages_key,
        session_keys=session_keys,
        separator=separator,
        lease_policy=lease_policy,
        lease_ttl=lease_ttl,
        lease_timeout=lease_timeout,
    )
