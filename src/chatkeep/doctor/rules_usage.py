"""CK104 a stateless query engine used for a conversation; CK105 one constant session key."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

from chatkeep.doctor.context import Module, Scope, scopes, walk
from chatkeep.doctor.diagnostic import Diagnostic
from chatkeep.doctor.imports import call_name, const_str, keyword

CHATTY = re.compile(r"chat|conversation|converse|message", re.I)
HISTORY = re.compile(r"^(chat_)?(history|messages|conversation|transcript)$|^chat_history", re.I)
KEY_KWARGS = {"session_id", "chat_store_key", "thread_id", "conversation_id"}
IDENTITY = re.compile(
    r"user|session|conversation|thread|chat_id|uid|^req(uest)?$|client|account|customer|^sid$",
    re.I,
)
KEYED_CLASSES = {"Memory", "AsyncMemory", "SQLiteSession"}


def _names(nodes: list[ast.stmt], fn: ast.AST | None) -> set[str]:
    found = {n.id for n in walk(nodes) if isinstance(n, ast.Name)}
    found |= {n.attr for n in walk(nodes) if isinstance(n, ast.Attribute)}
    if fn is not None:
        found |= {a.arg for a in ast.walk(fn) if isinstance(a, ast.arg)}
    return found


def _conversational(module: Module, scope: Scope) -> str | None:
    """Why this scope is clearly a conversation, or None."""
    h = scope.handler
    if h is not None:
        if h.chat:
            return f"{h.how} is called once per chat message"
        if h.route and CHATTY.search(h.route):
            return f"route {h.route!r}"
        if CHATTY.search(h.name):
            return f"handler `{h.name}`"
    names = _names(scope.body, scope.fn)
    if scope.fn is None and {"chat_input", "chat_message"} & names:
        return "the script uses st.chat_input"
    if scope.fn is not None:
        hist = sorted(n for n in names if HISTORY.match(n))
        if hist:
            return f"it handles `{hist[0]}`"
    return None


def _query_calls(module: Module, scope: Scope) -> Iterator[ast.Call]:
    engines: set[str] = set()
    for node in walk([*module.tree.body, *scope.body]):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            if call_name(module.imports, node.value).endswith("as_query_engine"):
                engines.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in walk(scope.body):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if _stateless_agent_run(module, node):
            yield node
            continue
        if node.func.attr not in ("query", "aquery"):
            continue
        base = node.func.value
        text = ast.unparse(base)
        if (
            "query_engine" in text
            or text.endswith("as_query_engine()")
            or (isinstance(base, ast.Name) and base.id in engines)
            or (isinstance(base, ast.Call) and call_name(module.imports, base).endswith("engine"))
        ):
            yield node


AGENT_RUNS = ("Runner.run", "Runner.run_sync", "Runner.run_streamed")
AGENT_STATE = ("session", "previous_response_id", "conversation_id")


def _stateless_agent_run(module: Module, call: ast.Call) -> bool:
    """``Runner.run(agent, text)`` with no session and only this turn's text as input."""
    name = call_name(module.imports, call)
    if not (name.startswith("agents.") and name.endswith(AGENT_RUNS)):
        return False
    if any(kw.arg in AGENT_STATE for kw in call.keywords):
        return False
    given = call.args[1] if len(call.args) > 1 else keyword(call, "input")
    return isinstance(given, ast.Name | ast.Attribute | ast.Constant | ast.JoinedStr)


def check_stateless(module: Module) -> Iterator[Diagnostic]:
    for scope in scopes(module):
        why = _conversational(module, scope)
        if why is None:
            continue
        for call in _query_calls(module, scope):
            passed = {n.id for a in call.args for n in ast.walk(a) if isinstance(n, ast.Name)}
            if any(HISTORY.match(n) or "memory" in n for n in passed):
                continue  # the conversation is passed in explicitly
            yield module.diag(
                call,
                "CK104",
                f"{ast.unparse(call.func)}() in {scope.where} answers from the question alone, "
                f"but this is a conversation ({why}): earlier turns are not seen",
            )


def _constant(module: Module, node: ast.AST | None) -> tuple[str, bool] | None:
    """(value, is_module_constant) when ``node`` is a literal or a module-level string."""
    value = const_str(node)
    if value is not None:
        return value, False
    if isinstance(node, ast.Name):
        bound = const_str(module.globals.get(node.id))
        if bound is not None:
            return bound, True
    return None


def _keys(module: Module, nodes: list[ast.stmt]) -> Iterator[tuple[ast.AST, str, bool]]:
    for node in walk(nodes):
        if isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg in KEY_KWARGS:
                    got = _constant(module, kw.value)
                    if got:
                        yield kw.value, *got
            name = call_name(module.imports, node)
            cls = name.rsplit(".", 1)[-1]
            top = name.split(".")[0]
            keyed = (cls in KEYED_CLASSES and top in ("chatkeep", "agents")) or (
                top.startswith("langchain") and cls.endswith("ChatMessageHistory")
            )
            if keyed and node.args:
                got = _constant(module, node.args[0])
                if got:
                    yield node.args[0], *got
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if const_str(k) in KEY_KWARGS:
                    got = _constant(module, v)
                    if got:
                        yield v, *got


def check_shared_key(module: Module) -> Iterator[Diagnostic]:
    for scope in scopes(module):
        if scope.fn is None:
            continue
        ids = [
            a.arg
            for a in ast.walk(scope.fn.args)
            if isinstance(a, ast.arg) and IDENTITY.search(a.arg)
        ]
        for node, value, is_global in _keys(module, scope.body):
            if not (is_global or ids):
                continue
            use = f"; key it by `{ids[0]}`" if ids else ""
            yield module.diag(
                node,
                "CK105",
                f"session key {value!r} is the same for every caller of {scope.where}: all "
                f"users share one conversation (and see each other's messages){use}",
            )
    if module.handlers:  # a web app: a module-level memory with a constant key is shared too
        for node, value, _ in _keys(module, module.tree.body):
            yield module.diag(
                node,
                "CK105",
                f"module-level session key {value!r} in a web app: every request and every "
                "user shares this one conversation",
            )
