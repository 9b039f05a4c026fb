"""Runtime watch: the article's "print id(memory)" advice, automated.

``watch(obj, key=...)`` records, for a session key, the process id, the object's identity and
the session's message count, logs them, and warns when the history shrinks (the conversation
was forgotten) or when an in-process memory object was re-created for the same session.
``WatchMiddleware`` (plain ASGI, no framework import) numbers requests and logs, at the end of
each, what every object watched during it holds.

Works by duck typing, without importing any framework: chatkeep ``Memory`` (counted from the
store), LlamaIndex ``ChatMemoryBuffer``/``Memory`` (``get_all()``), chat engines
(``chat_history``), LangChain histories (``messages``, ``chat_memory.messages``), OpenAI Agents
sessions (``await get_items()``, through :func:`awatch`) and plain lists.
"""

from __future__ import annotations

import contextvars
import inspect
import itertools
import logging
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from chatkeep.errors import ChatkeepWarning

T = TypeVar("T")
log = logging.getLogger("chatkeep.doctor")
MAX_KEYS = 10_000


class MemoryWatchWarning(ChatkeepWarning):
    """The runtime watch saw a conversation being lost."""


class HistoryShrankWarning(MemoryWatchWarning):
    """A session's history has fewer messages than before: it was forgotten."""


class MemoryRecreatedWarning(MemoryWatchWarning):
    """A new in-process memory object replaced the previous one for the same session."""


@dataclass
class _Seen:
    obj: Any
    pid: int
    count: int | None
    request: int | None


@dataclass
class _Request:
    number: int
    path: str
    watched: dict[str, Any] = field(default_factory=dict)


_lock = threading.Lock()
_seen: OrderedDict[str, _Seen] = OrderedDict()
_requests = itertools.count(1)
_current: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "chatkeep_doctor_request", default=None
)


def reset() -> None:
    """Forget every observation (for tests and long-running shells)."""
    with _lock:
        _seen.clear()


def _external_state(obj: Any) -> bool:
    """A chatkeep Memory is a view over a store: a new one per request is correct."""
    return type(obj).__module__.startswith("chatkeep.") and hasattr(obj, "store")


def default_key(obj: Any) -> str:
    for attr in ("session_id", "chat_store_key"):
        value = getattr(obj, attr, None)
        if isinstance(value, str):
            return value
    inner = getattr(obj, "memory", None) or getattr(obj, "_memory", None)
    if inner is not None and inner is not obj:
        return default_key(inner)
    return type(obj).__qualname__


def _counter(obj: Any) -> Callable[[], Any] | None:
    """A zero-argument callable returning the message count (or an awaitable of it)."""
    if _external_state(obj):
        store, sid = obj.store, obj.session_id

        def from_store() -> Any:
            info = store.info(sid)
            if inspect.isawaitable(info):

                async def later() -> int:
                    got = await info
                    return got.message_count if got else 0

                return later()
            return info.message_count if info else 0

        return from_store
    if isinstance(obj, list):
        return lambda: len(obj)
    for attr in ("get_all", "get_items"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            call: Callable[[], Any] = fn
            return lambda: _length(call())
    for path in (("chat_history",), ("messages",), ("chat_memory", "messages")):
        target: Any = obj
        for attr in path:
            target = getattr(target, attr, None)
        if isinstance(target, list):
            found = path
            return lambda: _length(_follow(obj, found))
    inner = getattr(obj, "memory", None) or getattr(obj, "_memory", None)
    if inner is not None and inner is not obj:
        return _counter(inner)
    return None


def _follow(obj: Any, path: tuple[str, ...]) -> Any:
    for attr in path:
        obj = getattr(obj, attr)
    return obj


def _length(value: Any) -> Any:
    if inspect.isawaitable(value):

        async def later() -> int:
            return len(await value)

        return later()
    return len(value)


def _count_sync(obj: Any) -> int | None:
    counter = _counter(obj)
    if counter is None:
        return None
    try:
        value = counter()
    except Exception:  # a framework's sync accessor inside a running loop, a closed store
        return None
    if inspect.isawaitable(value):
        close = getattr(value, "close", None)
        if close is not None:
            close()  # never leave an un-awaited coroutine behind
        return None
    return int(value)


async def _count_async(obj: Any) -> int | None:
    counter = _counter(obj)
    aget_all = getattr(obj, "aget_all", None)
    if callable(aget_all) and not _external_state(obj):  # LlamaIndex: never block the loop
        counter = aget_all
    if counter is None:
        return None
    try:
        value = counter()
        if inspect.isawaitable(value):
            value = await value
    except Exception:
        return None
    return len(value) if isinstance(value, list) else int(value)


def _observe(obj: Any, key: str, count: int | None, prev_final: int | None) -> None:
    pid = os.getpid()
    req = _current.get()
    with _lock:
        prev = _seen.get(key)
        _seen[key] = _Seen(obj, pid, count, req.number if req else None)
        _seen.move_to_end(key)
        while len(_seen) > MAX_KEYS:
            _seen.popitem(last=False)
    if req is not None:
        req.watched[key] = obj
    where = f"request {req.number} {req.path}" if req else "no request"
    log.info(
        "chatkeep.doctor.watch key=%r pid=%d object=%s id=0x%x messages=%s (%s)",
        key,
        pid,
        type(obj).__qualname__,
        id(obj),
        "?" if count is None else count,
        where,
    )
    if prev is None:
        return
    if count is not None and prev_final is not None and count < prev_final:
        _warn(
            HistoryShrankWarning(
                f"session {key!r}: history shrank from {prev_final} to {count} messages "
                f"(pid {prev.pid} -> {pid}, object 0x{id(prev.obj):x} -> 0x{id(obj):x}); "
                "the conversation was forgotten"
            )
        )
    carried = count is not None and prev_final is not None and count >= prev_final
    if prev.obj is not obj and not _external_state(obj) and not carried:
        # a new object whose history carried over is backed by something durable: fine
        _warn(
            MemoryRecreatedWarning(
                f"session {key!r}: a new {type(obj).__qualname__} (id 0x{id(obj):x}) replaced "
                f"the one seen before (id 0x{id(prev.obj):x}, pid {prev.pid}); in-process "
                "history does not carry over. Create it once, or use "
                "chatkeep.Memory(session_id, store=store)"
            )
        )


def _warn(warning: MemoryWatchWarning) -> None:
    log.warning("%s", warning)
    warnings.warn(warning, stacklevel=4)


def _previous(key: str) -> Any:
    with _lock:
        prev = _seen.get(key)
    return None if prev is None else prev.obj


def watch(obj: T, key: str | None = None) -> T:
    """Record ``obj`` for session ``key`` (default: its ``session_id`` / ``chat_store_key``)
    and return it unchanged. Warns with :class:`HistoryShrankWarning` or
    :class:`MemoryRecreatedWarning` when the conversation is being lost."""
    key = key if key is not None else default_key(obj)
    prev = _previous(key)
    prev_final = None if prev is None else _count_sync(prev)
    _observe(obj, key, _count_sync(obj), prev_final)
    return obj


async def awatch(obj: T, key: str | None = None) -> T:
    """:func:`watch` for async code: awaits async counters (``AsyncMemory``, Agents sessions,
    LlamaIndex ``aget_all``)."""
    key = key if key is not None else default_key(obj)
    prev = _previous(key)
    prev_final = None if prev is None else await _count_async(prev)
    _observe(obj, key, await _count_async(obj), prev_final)
    return obj


Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Any]


class WatchMiddleware:
    """ASGI middleware: numbers each request and, when it ends, logs the pid and what every
    object watched during it holds::

        app.add_middleware(WatchMiddleware)   # FastAPI / Starlette
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self,
        scope: Scope,
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        if scope.get("type") not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        req = _Request(next(_requests), str(scope.get("path", "")))
        token = _current.set(req)
        try:
            await self.app(scope, receive, send)
        finally:
            _current.reset(token)
            for key, obj in req.watched.items():
                log.info(
                    "chatkeep.doctor.watch end of request %d %s pid=%d key=%r id=0x%x messages=%s",
                    req.number,
                    req.path,
                    os.getpid(),
                    key,
                    id(obj),
                    await _count_async(obj),
                )
