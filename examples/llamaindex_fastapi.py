"""The LlamaIndex + FastAPI chat app from the "memory not persisting" article, fixed the
chatkeep way: the memory is created per request, keyed by the user, over a durable store.

    python examples/llamaindex_fastapi.py      # the demo below (offline)
    uvicorn llamaindex_fastapi:app --app-dir examples --reload --workers 1   # serve it

The demo starts a real uvicorn server, sends "My name is Ada.", stops the server, starts a new
one (a new process, as after a reload, a crash or a deploy) and asks "What is my name?". The
conversation lives in the store at ``$CHATKEEP_URL`` (default ``sqlite:///chatkeep.db``), so
the second server continues it. Offline: MockEmbedding, and MockLLM, which answers with the
prompt it got, so the reply shows which earlier turns the LLM saw. Swap in a real LLM
(``llm=OpenAI(...)``) and nothing else changes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM
from pydantic import BaseModel

import chatkeep
from chatkeep.adapters.llamaindex import ChatKeepMemory

# Built once per process: the index and the LLM client are expensive and hold no conversation.
DOCS = [Document(text="chatkeep keeps chat memory in a durable store, keyed by session.")]
INDEX = VectorStoreIndex.from_documents(DOCS, embed_model=MockEmbedding(embed_dim=8))
LLM = MockLLM()


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.store = chatkeep.open_store()  # once per process: $CHATKEEP_URL or SQLite
    yield
    app.state.store.close()


app = FastAPI(lifespan=lifespan)


class ChatIn(BaseModel):
    user_id: str
    message: str


@app.post("/chat")
def chat(body: ChatIn) -> dict[str, object]:
    # Per request is fine: the memory is a view over the store, keyed by the user.
    memory = ChatKeepMemory.from_defaults(
        session_id=body.user_id, store=app.state.store, token_limit=3000
    )
    engine = INDEX.as_chat_engine(chat_mode="condense_plus_context", llm=LLM, memory=memory)
    reply = engine.chat(body.message).response
    return {"response": reply, "pid": os.getpid(), "stored": len(memory.get_all())}


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _serve() -> tuple[subprocess.Popen[str], str]:
    """Start uvicorn on a free port (port 0: the OS picks) and return it with its base URL."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "llamaindex_fastapi:app",
            "--port",
            "0",
            "--no-access-log",
        ],
        cwd=Path(__file__).parent,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    for line in server.stderr:
        found = re.search(r"Uvicorn running on (http://\S+)", line)
        if found:
            return server, found.group(1)
    raise RuntimeError(f"uvicorn did not start (exit code {server.wait()})")


def _post(base: str, user_id: str, message: str) -> dict[str, object]:
    request = urllib.request.Request(
        f"{base}/chat",
        data=json.dumps({"user_id": user_id, "message": message}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        result: dict[str, object] = json.load(response)
        return result


def main() -> None:
    for text in ("My name is Ada.", "What is my name?"):
        server, base = _serve()  # a brand-new server process for each turn
        try:
            out = _post(base, "ada", text)
        finally:
            server.terminate()
            server.wait(timeout=30)
        print(f"[server pid {out['pid']}] you: {text}")
        if text != "My name is Ada.":
            earlier = "My name is Ada." in str(out["response"])
            print(f"  the LLM saw the earlier turn from the first server: {earlier}")
        print(f"  session 'ada' holds {out['stored']} messages")


if __name__ == "__main__":
    main()
