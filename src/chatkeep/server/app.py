"""``create_app(settings)``: the FastAPI app behind ``chatkeep serve``.

The store is opened once, in the app's lifespan, and shared by every request (each request
gets a cheap tenant-scoped view of it); it is closed at shutdown. ``app_from_env`` is the
factory uvicorn calls in each worker and after each reload (settings come from ``CHATKEEP_*``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from chatkeep._version import __version__
from chatkeep.server import api, chat, errors
from chatkeep.server.auth import check_startup, tenant_of
from chatkeep.server.keys import KeyFile
from chatkeep.server.llm import describe, make_provider
from chatkeep.server.metrics import CONTENT_TYPE, Metrics
from chatkeep.server.middleware import RequestMiddleware
from chatkeep.server.settings import Settings
from chatkeep.server.state import ServerState, state_of
from chatkeep.stores import open_async_store

STATIC = files("chatkeep.server") / "static"


def create_app(settings: Settings | None = None) -> FastAPI:
    """The server app. Use it under uvicorn, or in tests with ``TestClient(app)`` as a context
    manager (the lifespan opens the store)."""
    settings = settings or Settings.from_env()
    state = ServerState(settings=settings, keys=KeyFile(settings.keys_path), metrics=Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_startup(settings.host, settings.loopback, state.keys)
        state.store = await open_async_store(
            settings.store_url, encryption=settings.keyring() or False
        )
        state.provider = make_provider(
            settings.llm_base_url, settings.llm_model, settings.llm_api_key, settings.llm_timeout
        )
        try:
            yield
        finally:
            await state.provider.aclose()
            await state.store.close()
            state._views.clear()

    app = FastAPI(
        title="chatkeep",
        version=__version__,
        summary="Durable, session-keyed conversation memory for LLM chat apps",
        lifespan=lifespan,
    )
    app.state.chatkeep = state
    errors.install(app)
    app.include_router(api.router)
    app.include_router(chat.router)
    _ops(app)
    _ui(app)
    app.add_middleware(
        RequestMiddleware, metrics=state.metrics, max_body_bytes=settings.max_body_bytes
    )
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``--factory``): settings from the environment."""
    from chatkeep.server import logs

    settings = Settings.from_env()
    logs.configure(settings.log_level)
    return create_app(settings)


def _ops(app: FastAPI) -> None:
    @app.get("/healthz", tags=["operations"], summary="The process is up")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "pid": os.getpid()}

    @app.get(
        "/readyz",
        tags=["operations"],
        summary="The store is reachable",
        responses={503: errors.ERROR_RESPONSES[503]},
    )
    async def readyz(request: Request) -> JSONResponse:
        state = state_of(request)
        store = state.store
        assert store is not None
        durability: dict[str, Any] = {"scheme": store.scheme}
        try:
            await asyncio.wait_for(store.sessions(limit=1), timeout=5)
            # read after the store answered: a Redis store learns it on first contact
            durability["persistent"] = store.persistent
        except Exception as exc:
            return JSONResponse(
                {
                    "status": "unavailable",
                    "store": durability,
                    "error": errors.error_body("store_unavailable", str(exc))["error"],
                },
                status_code=503,
                headers=errors.RETRY_AFTER,
            )
        return JSONResponse({"status": "ready", "store": durability, "pid": os.getpid()})

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        return Response(state_of(request).metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/server", tags=["operations"], summary="What this server runs with")
    async def server_info(request: Request) -> dict[str, Any]:
        state = state_of(request)
        tenant = tenant_of(request, state.keys, loopback=state.settings.loopback)
        s = state.settings
        assert state.provider is not None and state.store is not None
        return {
            "version": __version__,
            "tenant": tenant,
            "keyless": not state.keys.records(),
            "provider": describe(state.provider),
            "store": state.store.scheme,
            "token_limit": s.token_limit,
            "system_prompt": s.system_prompt,
            "lease_policy": s.lease_policy,
            "max_body_bytes": s.max_body_bytes,
            "pid": os.getpid(),
        }


def _ui(app: FastAPI) -> None:
    index = STATIC / "index.html"

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(index), media_type="text/html")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
