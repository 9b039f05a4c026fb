"""``POST /v1/chat``: one turn, under the session's lease.

Take the lease (policy ``queue``: wait up to ``lease_timeout``; ``reject``: 409 at once), build
the window, call the LLM, then append the user message and the reply in one atomic write
(``expect_last_seq`` guards it too). Two turns on one session never interleave.

With ``"stream": true`` the reply comes as server-sent events: ``start`` (the window used and
the provider), ``delta`` (text pieces), then ``done`` (the stored messages) or ``error``. The
messages are appended only after the stream completes; if the client disconnects first, or the
LLM fails, nothing is appended and the lease is released.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from chatkeep.errors import ChatkeepError
from chatkeep.memory import AsyncMemory, AsyncTurn
from chatkeep.policies.tokens import text_tokens
from chatkeep.server.errors import ApiError, error_body, from_chatkeep
from chatkeep.server.llm import LLMError, Provider, describe
from chatkeep.server.models import ChatIn, stored, window_json
from chatkeep.server.state import ServerState, state_of, tenant_store
from chatkeep.store import AsyncStore
from chatkeep.types import JSONObject, Lease

router = APIRouter(prefix="/v1", tags=["chat"])
StoreDep = Annotated[AsyncStore, Depends(tenant_store)]


class _TimedMemory(AsyncMemory):
    """AsyncMemory that records how long the turn waited for its lease."""

    lease_wait = 0.0

    async def _acquire(self) -> Lease:
        started = time.perf_counter()
        try:
            return await super()._acquire()
        finally:
            self.lease_wait = time.perf_counter() - started


async def _start(state: ServerState, store: AsyncStore, body: ChatIn) -> tuple[AsyncTurn, Any]:
    s = state.settings
    memory = _TimedMemory(
        body.session_id,
        store=store,
        token_limit=body.token_limit or s.token_limit,
        system_prompt=s.system_prompt or None,
        lease_policy=s.lease_policy,
        lease_ttl=s.lease_ttl,
        lease_timeout=s.lease_timeout,
    )
    turn = memory.turn(body.message)
    await turn.__aenter__()
    state.metrics.lease_wait.observe(memory.lease_wait)
    assert turn.window is not None
    w = turn.window
    state.metrics.window_tokens.observe(w.tokens)
    state.metrics.window_messages.observe(len(w.all_messages))
    prompt = s.system_prompt or None
    view = window_json(
        body.session_id, w, prompt, text_tokens(store.tokenizer, prompt) if prompt else 0
    )
    view["lease_wait_ms"] = round(memory.lease_wait * 1e3, 3)
    return turn, view


async def _finish(turn: AsyncTurn, exc: BaseException | None) -> None:
    """Leave the turn (append on success, release the lease always), even when cancelled."""
    with anyio.CancelScope(shield=True):
        if exc is None:
            await turn.__aexit__(None, None, None)
        else:
            await turn.__aexit__(type(exc), exc, exc.__traceback__)


def _result(turn: AsyncTurn, reply: str, provider: Provider, window: JSONObject) -> JSONObject:
    assert turn.result is not None
    user, assistant = turn.result.messages
    return {
        "session_id": turn.memory.session_id,
        "reply": reply,
        "provider": describe(provider),
        "user": stored(user),
        "assistant": stored(assistant),
        "window": window,
    }


@router.post("/chat", summary="One chat turn: window, LLM, append user + reply atomically")
async def chat(body: ChatIn, request: Request, store: StoreDep) -> Any:
    state = state_of(request)
    provider = state.provider
    assert provider is not None
    turn, window = await _start(state, store, body)
    if body.stream:
        return StreamingResponse(
            _stream(state, provider, turn, window),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    started = time.perf_counter()
    try:
        reply = await provider.complete(turn.messages)
        turn.reply(reply)
    except BaseException as exc:
        state.metrics.llm_latency.labels(provider.name, "error").observe(
            time.perf_counter() - started
        )
        await _finish(turn, exc)
        if isinstance(exc, LLMError):
            raise ApiError(502, "llm_error", str(exc)) from exc
        raise
    state.metrics.llm_latency.labels(provider.name, "ok").observe(time.perf_counter() - started)
    await _finish(turn, None)
    state.metrics.appends.labels("chat").inc(2)
    return _result(turn, reply, provider, window)


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _stream(
    state: ServerState, provider: Provider, turn: AsyncTurn, window: JSONObject
) -> AsyncIterator[str]:
    started = time.perf_counter()
    pieces: list[str] = []
    try:
        yield _event("start", {"window": window, "provider": describe(provider)})
        async for piece in provider.stream(turn.messages):
            pieces.append(piece)
            yield _event("delta", {"text": piece})
        turn.reply("".join(pieces))
    except BaseException as exc:  # disconnect (cancellation), LLM failure: append nothing
        state.metrics.llm_latency.labels(provider.name, "error").observe(
            time.perf_counter() - started
        )
        await _finish(turn, exc)
        if isinstance(exc, LLMError):
            yield _event("error", error_body("llm_error", str(exc)))
            return
        raise
    state.metrics.llm_latency.labels(provider.name, "ok").observe(time.perf_counter() - started)
    try:
        await _finish(turn, None)
    except ChatkeepError as exc:
        status, code = from_chatkeep(exc)
        yield _event("error", {**error_body(code, str(exc)), "status": status})
        return
    state.metrics.appends.labels("chat").inc(2)
    yield _event("done", _result(turn, "".join(pieces), provider, window))
