"""Pure ASGI middleware: request ids, access logs, metrics, the worker's pid, body size limit.

Written against raw ASGI (not ``BaseHTTPMiddleware``) so streamed responses pass through
untouched and the body limit holds for chunked uploads without a ``Content-Length``.
"""

from __future__ import annotations

import json
import logging
import os
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chatkeep.server.errors import error_body
from chatkeep.server.logs import access, new_request_id, reset_request_id, set_request_id
from chatkeep.server.metrics import Metrics
from chatkeep.server.paths import PathNotUTF8, keep_encoded_slashes

log = logging.getLogger("chatkeep.server")


class _TooLarge(HTTPException):
    """Raised from ``receive``; an HTTPException so the app's handlers answer 413 too."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large(limit))


def _too_large(limit: int) -> str:
    return f"request body over {limit} bytes"


class RequestMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        rid = new_request_id(headers.get(b"x-request-id", b"").decode("latin-1"))
        token = set_request_id(rid)
        status = 500
        response_started = False
        pid = str(os.getpid())
        extra = [(b"x-request-id", rid.encode()), (b"x-chatkeep-worker", pid.encode())]

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        try:
            if declared > self.max_body:
                raise _TooLarge(self.max_body)
            keep_encoded_slashes(scope)
            await self.app(scope, limited_receive, send_wrapper)
        except PathNotUTF8 as exc:
            await self._error(send_wrapper, 400, "invalid_input", str(exc))
        except _TooLarge:
            if not response_started:
                await self._error(send_wrapper, 413, "payload_too_large", _too_large(self.max_body))
        except Exception:
            log.exception("unhandled error")  # the trace goes to the log, never to the client
            if not response_started:
                await self._error(
                    send_wrapper, 500, "internal_error", "internal error; see the server log"
                )
        finally:
            route = _route(scope)
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(
                time.perf_counter() - started
            )
            access(scope["method"], scope["path"], status, started, scope.get("chatkeep_tenant"))
            reset_request_id(token)

    @staticmethod
    async def _error(send: Send, status: int, code: str, message: str) -> None:
        body = json.dumps(error_body(code, message)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _route(scope: Scope) -> str:
    """The route's template (bounded label cardinality), not the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
