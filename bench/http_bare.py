"""The baseline for ``bench/http_api.py``: a bare FastAPI endpoint that stores nothing.

It parses the same JSON body the append endpoint gets (with pydantic) and answers a small JSON
object, under the same uvicorn, so the difference is what chatkeep's server does.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

app = FastAPI()


class Msg(BaseModel):
    role: str
    content: str


class Body(BaseModel):
    messages: list[Msg]


@app.post("/echo")
async def echo(body: Body) -> dict[str, Any]:
    return {"ok": True, "count": len(body.messages)}
