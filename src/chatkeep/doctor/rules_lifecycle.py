"""CK101 memory per request, CK102 engine/index/LLM per request, CK103 Streamlit reruns."""

from __future__ import annotations

import ast
from collections.abc import Iterator

from chatkeep.doctor.catalog import Construct
from chatkeep.doctor.context import Module, Scope, helper_calls, helper_constructs, live_constructs
from chatkeep.doctor.context import scopes as find_scopes
from chatkeep.doctor.diagnostic import Diagnostic
from chatkeep.doctor.imports import keyword

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


def _in_process_names(module: Module, scope: Scope) -> set[str]:
    """Names this scope binds to an in-process memory it builds (``memory = CMB(...)``)."""
    kinds = {id(c.node): c.kind for c in module.constructs(scope.body)}
    return {
        target.id
        for stmt in scope.body
        for node in ast.walk(stmt)
        if isinstance(node, ast.Assign) and kinds.get(id(node.value)) == "memory"
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _thin_engine(c: Construct, in_process: set[str]) -> bool:
    """An engine given a memory that does not start empty (a durable view such as chatkeep's
    ``ChatKeepMemory``, or one kept elsewhere) is a thin per-request wrapper: its state is in
    the memory, so building it per request is the chatkeep way, not a lifecycle mistake."""
    if c.kind != "engine" or not isinstance(c.node, ast.Call):
        return False
    memory = keyword(c.node, "memory")
    if memory is None or (isinstance(memory, ast.Constant) and memory.value is None):
        return False
    return not (isinstance(memory, ast.Name) and memory.id in in_process)


def check(module: Module) -> Iterator[Diagnostic]:
    for scope in find_scopes(module):
        if scope.per == "connection":
            continue  # a websocket handler's objects live as long as the conversation's socket
        in_process = _in_process_names(module, scope)
        for c in live_constructs(module, scope):
            if _thin_engine(c, in_process):
                continue
            code = _code(c, scope)
            if code:
                yield module.diag(c.node, code, _message(code, c, scope))
        for call, helper, via in helper_calls(module, scope):
            for c in helper_constructs(module, helper):
                code = _code(c, scope)
                if code:
                    yield module.diag(call, code, _message(code, c, scope, via))
