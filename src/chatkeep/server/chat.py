"""``POST /v1/chat``: one turn, under the session's lease.

Take the lease (policy ``queue``: wait up to ``lease_timeout``; ``reject``: 409 at once), build
the window, call the LLM, then append the user message and the reply in one atomic write
(``expect_last_seq`` guards it too). Two turns on one session never interleave.

With ``"stream": true`` the reply comes as server-sent events: ``start`` (the window used and
the provider), ``delta`` (text pieces), then ``done`` (the stored messages) or ``error``. The
messages are appended only after the stream completes; if the client disconnects first, or the
LLM fails, nothing is appended and the lease is released.

With an ``Idempotency-Key`` header a retried turn returns the stored turn (``"replayed":
true``) without calling the LLM again; see :mod:`chatkeep.server.idempotency`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import StreamingResponse

from chatkeep.errors import ChatkeepError
from chatkeep.memory import AsyncMemory, AsyncTurn
from chatkeep.policies.tokens import text_tokens
from chatkeep.server.errors import ERROR_RESPONSES, ApiError, error_body, from_chatkeep
from chatkeep.server.idempotency import ChatKey, find_turn
from chatkeep.server.llm import LLMError, Provider, describe
from chatkeep.server.models import ChatIn, stored, window_json
from chatkeep.server.state import ServerState, state_of, tenant_store
from chatkeep.store import AsyncStore
from chatkeep.types import JSONObject, StoredMessage

router = APIRouter(prefix="/v1", tags=["chat"], responses=ERROR_RESPONSES)
StoreDep = Annotated[AsyncStore, Depends(tenant_store)]


async def _start(
    state: ServerState, store: AsyncStore, body: ChatIn, key: ChatKey | None
) -> tuple[AsyncTurn, Any]:
    s = state.settings
    memory = AsyncMemory(
        body.session_id,
        store=store,
        token_limit=body.token_limit or s.token_limit,
        system_prompt=s.system_prompt or None,
        lease_policy=s.lease_policy,
        lease_ttl=s.lease_ttl,
        lease_timeout=s.lease_timeout,
    )
    if key is None:
        turn = memory.turn(body.message)
    else:
        turn = memory.turn(key.user_message(body.message), idempotency_key=key.append_key)
    try:
        await turn.__aenter__()
    finally:
        state.metrics.lease_wait.observe(turn.lease_wait_seconds)
    assert turn.window is not None
    w = turn.window
    state.metrics.window_tokens.observe(w.tokens)
    state.metrics.window_messages.observe(len(w.all_messages))
    prompt = s.system_prompt or None
    view = window_json(
        body.session_id, w, prompt, text_tokens(store.tokenizer, prompt) if prompt else 0
    )
    view["lease_wait_ms"] = round(turn.lease_wait_seconds * 1e3, 3)
    return turn, view


class _Replayed(Exception):
    """Leaves a turn without appending: the turn was already stored."""


async def _finish(turn: AsyncTurn, exc: BaseException | None) -> None:
    """Leave the turn (append on success, release the lease always), even when cancelled."""
    with anyio.CancelScope(shield=True):
        if exc is None:
            await turn.__aexit__(None, None, None)
        else:
            await turn.__aexit__(type(exc), exc, exc.__traceback__)


def _json(
    session_id: str,
    messages: tuple[StoredMessage, ...],
    provider: Provider,
    window: JSONObject,
    replayed: bool,
) -> JSONObject:
    user, assistant = messages
    return {
        "session_id": session_id,
        "reply": assistant.text,
        "provider": describe(provider),
        "user": stored(user),
        "assistant": stored(assistant),
        "window": window,
        "replayed": replayed,
    }


def _result(turn: AsyncTurn, provider: Provider, window: JSONObject, key: ChatKey | None) -> Any:
    r = turn.result
    assert r is not None
    if r.replayed and key is not None:  # the key was used before the look-back's reach
        key.check_body(r.messages[0])
    return _json(turn.memory.session_id, r.messages, provider, window, r.replayed)


@router.post("/chat", summary="One chat turn: window, LLM, append user + reply atomically")
async def chat(
    body: ChatIn,
    request: Request,
    store: StoreDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=256,
            description="retrying with the same key returns the stored turn; the LLM is "
            "not called again",
        ),
    ] = None,
) -> Any:
    state = state_of(request)
    provider = state.provider
    assert provider is not None
    key = None
    if idempotency_key is not None:
        if not idempotency_key.strip() or not idempotency_key.isprintable():
            raise ApiError(
                400, "invalid_input", "Idempotency-Key must be 1-256 printable characters"
            )
        key = ChatKey.of(idempotency_key, body.message)
    turn, window = await _start(state, store, body, key)
    if key is not None:
        try:
            done = await find_turn(store, body.session_id, key)
        except BaseException as exc:
            await _finish(turn, exc)
            raise
        if done is not None:
            await _finish(turn, _Replayed())
            replay = _json(body.session_id, done, provider, window, True)
            if body.stream:
                return _sse(_replay_stream(provider, window, replay))
            return replay
    if body.stream:
        return _sse(_stream(state, provider, turn, window, key))
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
    out = _result(turn, provider, window, key)
    if not out["replayed"]:
        state.metrics.appends.labels("chat").inc(2)
    return out


def _sse(events: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _event(name: str, data: Any) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _replay_stream(
    provider: Provider, window: JSONObject, replay: JSONObject
) -> AsyncIterator[str]:
    """A retried stream of a completed turn: the stored reply as one delta, then done."""
    yield _event("start", {"window": window, "provider": describe(provider), "replayed": True})
    yield _event("delta", {"text": replay["reply"]})
    yield _event("done", replay)


async def _stream(
    state: ServerState,
    provider: Provider,
    turn: AsyncTurn,
    window: JSONObject,
    key: ChatKey | None,
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
        out = _result(turn, provider, window, key)
    except ChatkeepError as exc:
        status, code = from_chatkeep(exc)
        yield _event("error", {**error_body(code, str(exc)), "status": status})
        return
    except ApiError as exc:
        yield _event("error", {**error_body(exc.code, exc.message), "status": exc.status})
        return
    if not out["replayed"]:
        state.metrics.appends.labels("chat").inc(2)
    yield _event("done", out)
