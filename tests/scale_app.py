"""A tiny chat app server for the scale-out test: ``python scale_app.py STORE_URL``.

It binds a free loopback port (the OS picks it), prints ``PORT <n>`` and serves:

* ``POST /chat/{session_id}`` ``{"text": ...}``: one turn with a fresh ``AsyncMemory`` per
  request (nothing kept in the process); the offline "LLM" answers with what its prompt held;
* ``GET /healthz``.

The store is opened once, in the app's lifespan, and closed at shutdown.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI

import chatkeep


def make_app(url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = await chatkeep.open_async_store(url)
        try:
            yield
        finally:
            await app.state.store.close()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid()}

    @app.post("/chat/{session_id}")
    async def chat(session_id: str, body: dict[str, str]) -> dict[str, Any]:
        memory = chatkeep.AsyncMemory(session_id, store=app.state.store, token_limit=3000)
        async with memory.turn(body["text"]) as turn:
            seen = [m["content"] for m in turn.messages]
            answer = f"pid {os.getpid()} saw {len(seen)} messages; first: {seen[0]}"
            turn.reply(answer)
        return {"pid": os.getpid(), "seen": seen, "answer": answer}

    return app


def main() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(make_app(sys.argv[1]), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
