"""``Memory`` / ``AsyncMemory``: one conversation, as a cheap view over a durable store.

A ``Memory`` holds no messages: it is ``(store, session_id, window settings)``. Creating one per
request, per worker or per Streamlit rerun is correct by construction, because every read goes
to the store.

``turn()`` is the unit an app cares about: read the window, call the LLM, append the user
message and the reply. It takes the session's lease so two concurrent turns on one session are
serialized (``lease_policy="queue"``, the default) or the second fails fast (``"reject"``), and
it appends with ``expect_last_seq`` so even a turn whose lease expired can never interleave.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Literal, TypeVar

from chatkeep.errors import InvalidInput, LeaseBusy, LeaseTimeout
from chatkeep.policies.tokens import message_tokens, text_tokens
from chatkeep.store import AsyncStore, MessagesIn, Store
from chatkeep.tokenizers import Tokenizer
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    Message,
    StoredMessage,
    Window,
    as_message_list,
    coerce_message,
)
from chatkeep.validation import check_session_id

LeasePolicy = Literal["queue", "reject"]
T = TypeVar("T")
_BACKOFF_START = 0.005
_BACKOFF_MAX = 0.1

_default_lock = threading.Lock()
_default_store: Store | None = None


def default_store() -> Store:
    """The process-wide store at ``$CHATKEEP_URL`` (else ``sqlite:///chatkeep.db``).

    Opened on first use and closed at interpreter exit. Used by ``Memory(session_id)`` when no
    store is given.
    """
    global _default_store
    with _default_lock:
        if _default_store is None or _default_store.closed:
            import atexit

            from chatkeep.stores import open_store

            _default_store = open_store()
            atexit.register(_default_store.close)
        return _default_store


def _user_message(user: str | Message | Mapping[str, Any] | None) -> Message | None:
    if user is None:
        return None
    return Message.user(user) if isinstance(user, str) else coerce_message(user)


class _MemoryCore:
    def __init__(
        self,
        session_id: str,
        *,
        token_limit: int = 3000,
        system_prompt: str | None = None,
        pin_system: bool = True,
        lease_policy: LeasePolicy = "queue",
        lease_ttl: float = 60.0,
        lease_timeout: float = 30.0,
    ) -> None:
        self.session_id = check_session_id(session_id)
        if not isinstance(token_limit, int) or token_limit < 1:
            raise InvalidInput(f"token_limit must be a positive int, got {token_limit!r}")
        if lease_policy not in ("queue", "reject"):
            raise InvalidInput(f"lease_policy must be 'queue' or 'reject', not {lease_policy!r}")
        if system_prompt is not None:
            Message.system(system_prompt)  # validate early
        self.token_limit = token_limit
        self.system_prompt = system_prompt
        self.pin_system = pin_system
        self.lease_policy: LeasePolicy = lease_policy
        self.lease_ttl = lease_ttl
        self.lease_timeout = lease_timeout

    def _reserve(self, tokenizer: Tokenizer, extra: list[Message]) -> int:
        reserve = text_tokens(tokenizer, self.system_prompt) if self.system_prompt else 0
        return reserve + sum(message_tokens(tokenizer, m) for m in extra)

    def _prompt(self, window: Window, extra: list[Message]) -> list[JSONObject]:
        out: list[JSONObject] = []
        if self.system_prompt:
            out.append({"role": "system", "content": self.system_prompt})
        out.extend(window.to_openai())
        out.extend(m.to_openai() for m in extra)
        return out

    @staticmethod
    def _message(
        role_or_message: str | Message | Mapping[str, Any], content: Any, fields: dict[str, Any]
    ) -> Message:
        if isinstance(role_or_message, str):
            if not fields:  # add("user", "hi"): what from_dict builds, without its dict
                role: Any = role_or_message  # Message checks it is a known role
                return Message(role, "" if content is None else content)
            return Message.from_dict({"role": role_or_message, "content": content, **fields})
        if content is not None or fields:
            raise InvalidInput("pass either a Message/dict, or a role with content and fields")
        return coerce_message(role_or_message)

    def _busy(self, what: str) -> LeaseBusy:
        return LeaseBusy(
            f"another turn is running on session {self.session_id!r} ({what}); "
            "retry later or use lease_policy='queue'"
        )

    def _timeout(self) -> LeaseTimeout:
        return LeaseTimeout(
            f"waited {self.lease_timeout:g}s for the turn lease on session "
            f"{self.session_id!r}; another turn is still running (or crashed: its lease "
            f"expires after lease_ttl={self.lease_ttl:g}s)"
        )


class Memory(_MemoryCore):
    """One conversation over a :class:`~chatkeep.Store`.

    >>> memory = Memory("user-42", store=store, system_prompt="You are terse.")
    >>> with memory.turn("What did I ask before?") as turn:
    ...     turn.reply(llm(turn.messages))
    """

    def __init__(self, session_id: str, *, store: Store | None = None, **kw: Any) -> None:
        super().__init__(session_id, **kw)
        self.store = store if store is not None else default_store()

    def add(
        self,
        role_or_message: str | Message | Mapping[str, Any],
        content: Any = None,
        **fields: Any,
    ) -> StoredMessage:
        """Append one message: ``add("user", "hi")`` or ``add(Message.user("hi"))``."""
        msg = self._message(role_or_message, content, fields)
        return self.store.append(self.session_id, msg).messages[0]

    def add_messages(
        self, messages: MessagesIn, *, idempotency_key: str | None = None
    ) -> AppendResult:
        """Append several messages atomically."""
        return self.store.append(self.session_id, messages, idempotency_key=idempotency_key)

    def window(self, token_limit: int | None = None) -> Window:
        """The stored messages the LLM gets (the system prompt's tokens are reserved)."""
        return self.store.window(
            self.session_id,
            token_limit or self.token_limit,
            pin_system=self.pin_system,
            reserve=self._reserve(self.store.tokenizer, []),
        )

    def messages(self) -> list[JSONObject]:
        """The prompt as OpenAI chat messages: system prompt, summary, window."""
        return self._prompt(self.window(), [])

    def history(self) -> list[StoredMessage]:
        """Every stored message of the session, oldest first."""
        return self.store.read(self.session_id)

    def clear(self) -> int:
        return self.store.clear(self.session_id)

    def turn(
        self,
        user: str | Message | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> Turn:
        """A turn under the session's lease: ``with memory.turn("hi") as t: t.reply(...)``.

        With ``idempotency_key`` the turn's append uses it: if a turn with that key was already
        stored on the session, nothing is stored again and ``turn.result.replayed`` is True."""
        return Turn(self, _user_message(user), idempotency_key)

    def _acquire(self) -> Lease:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + self.lease_timeout
        delay = _BACKOFF_START
        while True:
            lease = self.store.acquire_lease(self.session_id, owner=owner, ttl=self.lease_ttl)
            if lease is not None:
                return lease
            if self.lease_policy == "reject":
                raise self._busy("lease_policy='reject'")
            if time.monotonic() >= deadline:
                raise self._timeout()
            time.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)


class Turn:
    """One read-window → call-LLM → append step, under the session's lease.

    ``messages`` is the prompt (system prompt, summary, window, the new user message). Add the
    reply with :meth:`reply` (or tool calls and results with :meth:`add`); on a clean exit the
    user message and everything added are appended in one atomic write. On an exception nothing
    is written. The lease is released either way. ``lease_wait_seconds`` says how long entering
    the turn waited for the lease (for metrics).
    """

    def __init__(
        self, memory: Memory, user: Message | None, idempotency_key: str | None = None
    ) -> None:
        if idempotency_key is not None:
            check_session_id(idempotency_key)  # same rules as the store's: fail before the LLM
        self.memory = memory
        self.user = user
        self.idempotency_key = idempotency_key
        #: seconds spent waiting for the session's lease when the turn was entered
        self.lease_wait_seconds = 0.0
        self.added: list[Message] = []
        self.window: Window | None = None
        self.result: AppendResult | None = None
        self._lease: Lease | None = None

    def __enter__(self) -> Turn:
        m = self.memory
        started = time.perf_counter()
        try:
            self._lease = m._acquire()
        finally:
            self.lease_wait_seconds = time.perf_counter() - started
        try:
            extra = [self.user] if self.user else []
            self.window = m.store.window(
                m.session_id,
                m.token_limit,
                pin_system=m.pin_system,
                reserve=m._reserve(m.store.tokenizer, extra),
            )
            self.messages = m._prompt(self.window, extra)
        except BaseException:
            self._release()
            raise
        return self

    def add(self, messages: MessagesIn) -> None:
        """Queue messages (assistant tool calls, tool results, the reply) for the append."""
        self.added.extend(as_message_list(messages))

    def reply(self, content: Any, **fields: Any) -> None:
        """Queue the assistant's reply."""
        self.added.append(Message.from_dict({"role": "assistant", "content": content, **fields}))

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            batch = ([self.user] if self.user else []) + self.added
            if t is None and batch:
                assert self.window is not None
                self.result = self.memory.store.append(
                    self.memory.session_id,
                    batch,
                    idempotency_key=self.idempotency_key,
                    expect_last_seq=self.window.last_seq,
                )
        finally:
            self._release()

    def _release(self) -> None:
        if self._lease is not None:
            lease, self._lease = self._lease, None
            self.memory.store.release_lease(self.memory.session_id, lease.token)


class AsyncMemory(_MemoryCore):
    """The async twin of :class:`Memory` over an :class:`~chatkeep.AsyncStore`."""

    def __init__(self, session_id: str, *, store: AsyncStore, **kw: Any) -> None:
        super().__init__(session_id, **kw)
        self.store = store

    async def add(
        self,
        role_or_message: str | Message | Mapping[str, Any],
        content: Any = None,
        **fields: Any,
    ) -> StoredMessage:
        msg = self._message(role_or_message, content, fields)
        return (await self.store.append(self.session_id, msg)).messages[0]

    async def add_messages(
        self, messages: MessagesIn, *, idempotency_key: str | None = None
    ) -> AppendResult:
        return await self.store.append(self.session_id, messages, idempotency_key=idempotency_key)

    async def window(self, token_limit: int | None = None) -> Window:
        return await self.store.window(
            self.session_id,
            token_limit or self.token_limit,
            pin_system=self.pin_system,
            reserve=self._reserve(self.store.tokenizer, []),
        )

    async def messages(self) -> list[JSONObject]:
        return self._prompt(await self.window(), [])

    async def history(self) -> list[StoredMessage]:
        return await self.store.read(self.session_id)

    async def clear(self) -> int:
        return await self.store.clear(self.session_id)

    def turn(
        self,
        user: str | Message | Mapping[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> AsyncTurn:
        """``async with memory.turn("hi") as t: t.reply(await llm(t.messages))``."""
        return AsyncTurn(self, _user_message(user), idempotency_key)

    async def _acquire(self) -> Lease:
        owner = uuid.uuid4().hex
        deadline = time.monotonic() + self.lease_timeout
        delay = _BACKOFF_START
        while True:
            # if the caller is cancelled meanwhile, a lease granted anyway is given back
            lease = await _to_the_end(
                self.store.acquire_lease(self.session_id, owner=owner, ttl=self.lease_ttl),
                undo=self._give_back,
            )
            if lease is not None:
                return lease
            if self.lease_policy == "reject":
                raise self._busy("lease_policy='reject'")
            if time.monotonic() >= deadline:
                raise self._timeout()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_MAX)

    async def _give_back(self, lease: Lease | None) -> None:
        if lease is not None:
            await self.store.release_lease(self.session_id, lease.token)


class AsyncTurn:
    """The async twin of :class:`Turn`."""

    def __init__(
        self, memory: AsyncMemory, user: Message | None, idempotency_key: str | None = None
    ) -> None:
        if idempotency_key is not None:
            check_session_id(idempotency_key)  # same rules as the store's: fail before the LLM
        self.memory = memory
        self.user = user
        self.idempotency_key = idempotency_key
        #: seconds spent waiting for the session's lease when the turn was entered
        self.lease_wait_seconds = 0.0
        self.added: list[Message] = []
        self.window: Window | None = None
        self.result: AppendResult | None = None
        self._lease: Lease | None = None

    async def __aenter__(self) -> AsyncTurn:
        m = self.memory
        started = time.perf_counter()
        try:
            self._lease = await m._acquire()
        finally:
            self.lease_wait_seconds = time.perf_counter() - started
        try:
            extra = [self.user] if self.user else []
            self.window = await m.store.window(
                m.session_id,
                m.token_limit,
                pin_system=m.pin_system,
                reserve=m._reserve(m.store.tokenizer, extra),
            )
            self.messages = m._prompt(self.window, extra)
        except BaseException:
            await self._release()
            raise
        return self

    def add(self, messages: MessagesIn) -> None:
        self.added.extend(as_message_list(messages))

    def reply(self, content: Any, **fields: Any) -> None:
        self.added.append(Message.from_dict({"role": "assistant", "content": content, **fields}))

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            batch = ([self.user] if self.user else []) + self.added
            if t is None and batch:
                assert self.window is not None
                self.result = await self.memory.store.append(
                    self.memory.session_id,
                    batch,
                    idempotency_key=self.idempotency_key,
                    expect_last_seq=self.window.last_seq,
                )
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._lease is not None:
            lease, self._lease = self._lease, None
            # Shielded: an anyio cancel scope (FastAPI, Starlette) cancels every await inside
            # it, this one too, which left the session locked for lease_ttl.
            await _to_the_end(self.memory.store.release_lease(self.memory.session_id, lease.token))


#: tasks :func:`_to_the_end` keeps alive after their caller was cancelled
_FINISHING: set[asyncio.Task[Any]] = set()


async def _to_the_end(
    call: Coroutine[Any, Any, T], *, undo: Callable[[T], Coroutine[Any, Any, object]] | None = None
) -> T:
    """Await ``call``; if the caller is cancelled meanwhile, the caller sees its cancellation
    at once, ``call`` still runs to the end, and then ``undo`` gets what it returned."""
    task = _finish(call)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if undo is not None:
            task.add_done_callback(functools.partial(_undo, undo))
        raise


def _finish(call: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    task = asyncio.ensure_future(call)
    _FINISHING.add(task)
    task.add_done_callback(_forget)
    return task


def _forget(task: asyncio.Task[Any]) -> None:
    _FINISHING.discard(task)
    if not task.cancelled():
        task.exception()  # nobody may be left to see it: don't log "never retrieved"


def _undo(undo: Callable[[T], Coroutine[Any, Any, object]], task: asyncio.Task[T]) -> None:
    if not task.cancelled() and task.exception() is None:
        _finish(undo(task.result()))
