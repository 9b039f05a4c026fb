"""REST API under ``/v1``: sessions, messages, window, summary (chat is in ``chat.py``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse

from chatkeep.memory import AsyncMemory
from chatkeep.policies.tokens import text_tokens
from chatkeep.server import paths  # noqa: F401  (registers the "sid" path convertor)
from chatkeep.server.errors import ERROR_RESPONSES, ApiError
from chatkeep.server.models import AppendIn, SummaryIn, info_json, stored, summary_json, window_json
from chatkeep.server.state import state_of, tenant_store
from chatkeep.store import AsyncStore
from chatkeep.validation import check_session_id

router = APIRouter(prefix="/v1", responses=ERROR_RESPONSES)
StoreDep = Annotated[AsyncStore, Depends(tenant_store)]
SID = "/sessions/{session_id:sid}"  # the convertor: chatkeep.server.paths


def not_found(session_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no session {session_id!r}")


@router.get("/sessions", tags=["sessions"], summary="List sessions (paged, by id)")
async def list_sessions(
    store: StoreDep,
    prefix: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: Annotated[str | None, Query(max_length=1024)] = None,
) -> dict[str, Any]:
    page = await store.sessions(prefix=prefix or None, limit=limit, cursor=cursor or None)
    return {"items": [info_json(i) for i in page.items], "next_cursor": page.next_cursor}


@router.get(SID + "/messages", tags=["messages"], summary="Read messages (paged by seq)")
async def read_messages(
    session_id: str,
    store: StoreDep,
    after_seq: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows = await store.read(session_id, after_seq=after_seq, limit=limit)
    if not rows and await store.info(session_id) is None:
        raise not_found(session_id)
    more = len(rows) == limit
    return {"items": [stored(m) for m in rows], "next_after_seq": rows[-1].seq if more else None}


@router.post(
    SID + "/messages",
    tags=["messages"],
    summary="Append messages atomically",
    status_code=201,
    responses={200: {"description": "replayed: this Idempotency-Key was already used"}},
)
async def append_messages(
    session_id: str,
    body: AppendIn,
    request: Request,
    store: StoreDep,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> JSONResponse:
    messages = [m.to_message() for m in body.messages]
    result = await store.append(session_id, messages, idempotency_key=idempotency_key)
    if not result.replayed:
        state_of(request).metrics.appends.labels("api").inc(len(messages))
    return JSONResponse(
        {
            "session_id": result.session_id,
            "first_seq": result.first_seq,
            "last_seq": result.last_seq,
            "replayed": result.replayed,
            "messages": [stored(m) for m in result.messages],
        },
        status_code=200 if result.replayed else 201,
    )


@router.get(SID + "/window", tags=["window"], summary="What the LLM gets for a token budget")
async def get_window(
    session_id: str,
    request: Request,
    store: StoreDep,
    token_limit: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
) -> dict[str, Any]:
    settings = state_of(request).settings
    memory = AsyncMemory(
        session_id,
        store=store,
        token_limit=token_limit or settings.token_limit,
        system_prompt=settings.system_prompt or None,
    )
    window = await memory.window()
    if window.last_seq == 0 and await store.info(session_id) is None:
        raise not_found(session_id)
    metrics = state_of(request).metrics
    metrics.window_tokens.observe(window.tokens)
    metrics.window_messages.observe(len(window.all_messages))
    prompt = settings.system_prompt or None
    return window_json(
        session_id, window, prompt, text_tokens(store.tokenizer, prompt) if prompt else 0
    )


@router.get(SID + "/summary", tags=["summary"], summary="The running summary")
async def get_summary(session_id: str, store: StoreDep) -> dict[str, Any]:
    summary = await store.get_summary(session_id)
    if summary is None:
        check_session_id(session_id)
        raise ApiError(404, "not_found", f"session {session_id!r} has no summary")
    out = summary_json(summary)
    assert out is not None
    return out


@router.put(SID + "/summary", tags=["summary"], summary="Store the running summary")
async def put_summary(session_id: str, body: SummaryIn, store: StoreDep) -> dict[str, Any]:
    if await store.info(session_id) is None:
        raise not_found(session_id)
    out = summary_json(await store.put_summary(session_id, body.text, body.covers_through_seq))
    assert out is not None
    return out


@router.get(SID, tags=["sessions"], summary="One session's info")
async def session_info(session_id: str, store: StoreDep) -> dict[str, Any]:
    info = await store.info(session_id)
    if info is None:
        raise not_found(session_id)
    return info_json(info)


@router.delete(SID, tags=["sessions"], summary="Delete a session and its messages", status_code=204)
async def delete_session(session_id: str, store: StoreDep) -> Response:
    if not await store.delete(session_id):
        raise not_found(session_id)
    return Response(status_code=204)
