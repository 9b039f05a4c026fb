"""CK101 memory per request, CK102 engine/index/LLM per request, CK103 Streamlit reruns."""

from __future__ import annotations

from collections.abc import Iterator

from chatkeep.doctor.catalog import Construct
from chatkeep.doctor.context import Module, Scope, helper_calls, helper_constructs, live_constructs
from chatkeep.doctor.context import scopes as find_scopes
from chatkeep.doctor.diagnostic import Diagnostic

WHAT = {
    "engine": "a chat engine",
    "index": "an index",
    "llm": "an LLM client",
    "embedding": "an embedding model",
}


def _code(c: Construct, scope: Scope) -> str | None:
    if c.kind == "connection":
        return None  # CK108's business
    if scope.fn is None:  # Streamlit: memory and engines (which hold a memory) start empty
        return "CK103" if c.kind in ("memory", "engine") else "CK102"
    return "CK101" if c.kind == "memory" else "CK102"


def _message(code: str, c: Construct, scope: Scope, via: str = "") -> str:
    made = f"{c.label} (line {c.node.lineno})" if via else c.label
    if code == "CK101":
        head = (
            f"{via}, called in {scope.where}, creates {made}"
            if via
            else f"{made} is created in {scope.where}"
        )
        return (
            f"{head}: an in-process memory with no durable store, so every {scope.per} starts empty"
        )
    if code == "CK103":
        head = (
            f"{via}, called in {scope.where}, builds {made}"
            if via
            else f"{made} is built in {scope.where}"
        )
        return (
            f"{head} without st.session_state or st.cache_resource: every rerun starts with an "
            "empty memory"
        )
    what = WHAT.get(c.kind, c.kind)
    head = (
        f"{via}, called in {scope.where}, builds {what} with {made}"
        if via
        else f"{made} builds {what} in {scope.where}"
    )
    engine = ", and a fresh empty chat memory" if c.kind == "engine" else ""
    return f"{head}: rebuilt on every {scope.per} (hot-path cost{engine})"


def check(module: Module) -> Iterator[Diagnostic]:
    for scope in find_scopes(module):
        if scope.per == "connection":
            continue  # a websocket handler's objects live as long as the conversation's socket
        for c in live_constructs(module, scope):
            code = _code(c, scope)
            if code:
                yield module.diag(c.node, code, _message(code, c, scope))
        for call, helper, via in helper_calls(module, scope):
            for c in helper_constructs(module, helper):
                code = _code(c, scope)
                if code:
                    yield module.diag(call, code, _message(code, c, scope, via))
