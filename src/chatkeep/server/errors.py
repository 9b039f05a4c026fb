"""One JSON error shape for everything the server refuses::

    {"error": {"code": "not_found", "message": "...", "request_id": "..."}}

Every chatkeep error, request validation error, 404/405/413 and unexpected exception (500)
gets it. Stack traces go to the server's log, never to clients.

Transient failures (the store is unreachable, a queued turn waited too long) are 503 with a
``Retry-After`` header, so HTTP clients' standard retry policies back off and retry; a full disk
is 507 ``store_full`` without one: it needs an operator, not a quick retry. Nothing of a
request that failed with either was stored, so retrying it (with the same ``Idempotency-Key``)
is safe.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from chatkeep.errors import (
    ChatkeepError,
    ConflictError,
    InvalidInput,
    LeaseBusy,
    LeaseTimeout,
    StoreClosed,
    StoreError,
    StoreFull,
    TokenizerMismatch,
)
from chatkeep.server.logs import current_request_id

log = logging.getLogger("chatkeep.server")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "too_many_requests",
    502: "llm_error",
    503: "unavailable",
    507: "store_full",
}

RETRY_AFTER_SECONDS = 1
"""What 503 answers put in ``Retry-After``: a database restart takes about a second or two."""

RETRY_AFTER = {"Retry-After": str(RETRY_AFTER_SECONDS)}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "the store is unavailable (or a queued turn waited too long); nothing "
        "was stored: retry after `Retry-After` seconds (with the same `Idempotency-Key`)",
        "headers": {
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "integer"},
            }
        },
    },
    507: {"description": "the store's disk is full; nothing was stored (`store_full`)"},
}
"""The 503/507 answers every store-backed route may give, for the OpenAPI schema."""


class ApiError(Exception):
    """An error the API returns as-is: HTTP status, stable code, message."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "request_id": current_request_id()}}


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def from_chatkeep(exc: ChatkeepError) -> tuple[int, str]:
    """HTTP status and code for a chatkeep exception."""
    if isinstance(exc, InvalidInput):
        return 400, "invalid_input"
    if isinstance(exc, LeaseBusy):
        return 409, "session_busy"
    if isinstance(exc, LeaseTimeout):
        return 503, "session_busy_timeout"
    if isinstance(exc, ConflictError):
        return 409, "conflict"
    if isinstance(exc, TokenizerMismatch):
        return 500, "tokenizer_mismatch"
    if isinstance(exc, StoreFull):
        return 507, "store_full"
    if isinstance(exc, StoreClosed | StoreError):
        return 503, "store_unavailable"
    return 500, "internal_error"


def headers_for(status: int) -> dict[str, str] | None:
    """``Retry-After`` on 503 answers, nothing on the others."""
    return RETRY_AFTER if status == 503 else None


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def _unparsable_body(exc: StarletteHTTPException) -> str | None:
    """Why FastAPI could not parse a JSON body (it answers a bare "error parsing the body")."""
    cause = exc.__cause__
    if exc.status_code != 400 or cause is None:
        return None
    if isinstance(cause, RecursionError):
        return "the JSON body is nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return f"the body is not valid UTF-8 (byte {cause.start}: {cause.reason})"
    if isinstance(cause, ValueError):
        return f"the body is not valid JSON: {cause}"
    return None


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the one shape."""

    @app.exception_handler(ApiError)
    async def _api(request: Request, exc: ApiError) -> JSONResponse:
        headers = exc.headers or headers_for(exc.status)
        return error_response(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(ChatkeepError)
    async def _chatkeep(request: Request, exc: ChatkeepError) -> JSONResponse:
        status, code = from_chatkeep(exc)
        if status >= 500:
            log.error("store error", exc_info=exc)
            message = str(exc) if code != "internal_error" else "internal error"
            return error_response(status, code, message, headers_for(status))
        return error_response(status, code, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unparsable = _unparsable_body(exc)
        if unparsable is not None:
            return error_response(400, "invalid_json", unparsable)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        headers = getattr(exc, "headers", None) or headers_for(exc.status_code)
        return error_response(exc.status_code, code, message, headers)

    # Anything else is answered 500 (same shape, no details) by RequestMiddleware.
