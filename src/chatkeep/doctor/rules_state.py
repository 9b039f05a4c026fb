"""CK106 in-process state with reload/workers, CK107 half-persisted SimpleChatStore, CK108
stores opened per request and never closed."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

from chatkeep.doctor.catalog import _split, classify
from chatkeep.doctor.context import Module, live_constructs, scopes, walk
from chatkeep.doctor.diagnostic import Diagnostic
from chatkeep.doctor.imports import call_name

HISTORYISH = re.compile(r"histor|messages|memor|chat|conversation|session|transcript", re.I)
CONTAINERS = {"dict", "list", "defaultdict", "OrderedDict", "deque"}
MUTATORS = {"append", "extend", "setdefault", "update", "insert", "appendleft"}
CLOSERS = {"close", "aclose", "disconnect"}


@dataclass(frozen=True)
class State:
    """In-process chat state at module level (the CK106 half that lives in code)."""

    path: str
    line: int
    col: int
    label: str


def in_process_state(module: Module) -> Iterator[State]:
    if module.streamlit:
        return  # Streamlit runs one process and reruns the script: CK103's business
    for c in module.constructs(module.tree.body):
        if c.kind == "memory":
            yield State(module.path, c.node.lineno, c.node.col_offset + 1, c.label)
    stored: dict[str, list[ast.expr]] = {}  # global name -> values put into it
    for node in module.nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in MUTATORS:
                root = node.func.value
                while isinstance(root, ast.Subscript | ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name):
                    stored.setdefault(root.id, []).extend(node.args[-1:])
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
                    stored.setdefault(target.value.id, []).append(node.value)
    for stmt in module.tree.body:
        if not (isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None):
            continue
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        value = stmt.value
        container = isinstance(value, ast.Dict | ast.List) or (
            isinstance(value, ast.Call)
            and call_name(module.imports, value).rsplit(".", 1)[-1] in CONTAINERS
        )
        if not container:
            continue
        for t in targets:
            if not (isinstance(t, ast.Name) and HISTORYISH.search(t.id) and t.id in stored):
                continue
            if all(_handle(module, v) for v in stored[t.id]):
                continue  # a cache of durable handles (SQLiteSession(id, "x.db"), clients...)
            yield State(module.path, stmt.lineno, stmt.col_offset + 1, f"global `{t.id}`")


def _handle(module: Module, value: ast.expr) -> bool:
    """True when ``value`` builds an object that is not itself in-process history."""
    if not isinstance(value, ast.Call):
        return False
    name = call_name(module.imports, value)
    if not name or name.rsplit(".", 1)[-1] in CONTAINERS:
        return False
    found = classify(module.imports, value)
    return found is None or found.kind != "memory"


def check_half_persisted(module: Module) -> Iterator[Diagnostic]:
    built: set[str] = set()  # names bound to SimpleChatStore() / from_persist_path(...)
    loads: list[ast.Call] = []
    persists: dict[str, ast.Call] = {}  # receiver text -> first .persist() call
    for node in module.nodes:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            _, cls, method = _split(call_name(module.imports, node.value))
            if cls == "SimpleChatStore" and method in ("", "from_persist_path"):
                built.update(ast.unparse(t) for t in node.targets)
    for node in module.calls:
        _, cls, method = _split(call_name(module.imports, node))
        if cls == "SimpleChatStore" and method == "from_persist_path":
            loads.append(node)
        elif isinstance(node.func, ast.Attribute) and node.func.attr == "persist":
            receiver = ast.unparse(node.func.value)
            if "storage_context" not in receiver and "index" not in receiver.lower():
                persists.setdefault(receiver, node)
    if not loads:  # only a store this module built is surely a SimpleChatStore
        for name, node in persists.items():
            if name in built:
                yield module.diag(
                    node,
                    "CK107",
                    f"SimpleChatStore `{name}` is persisted but never loaded back "
                    "(no SimpleChatStore.from_persist_path): a restart starts with no history",
                )
    elif not persists:  # no .persist() at all, on anything that could be the chat store
        for node in loads:
            yield module.diag(
                node,
                "CK107",
                "SimpleChatStore is loaded with from_persist_path but never persisted: "
                "messages added since the load are lost on restart",
            )


def check_unclosed(module: Module) -> Iterator[Diagnostic]:
    for scope in scopes(module):
        closed: set[str] = set()
        for node in walk(scope.body):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in CLOSERS:
                    closed.add(ast.unparse(node.func.value))
            elif isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    closed.update(
                        n.id for n in ast.walk(item.context_expr) if isinstance(n, ast.Name)
                    )
            elif isinstance(node, ast.Return | ast.Yield) and isinstance(node.value, ast.Name):
                closed.add(node.value.id)  # handed to the caller (a dependency's yield)
        for c in live_constructs(module, scope):
            if c.kind != "connection" or _in_with(module, c.node):
                continue
            stmt = module.statement(c.node)
            names: list[str] = []
            if isinstance(stmt, ast.Assign | ast.AnnAssign):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                names = [ast.unparse(t) for t in targets]
            if names and any(n in closed for n in names):
                continue
            yield module.diag(
                c.node,
                "CK108",
                f"{c.label} opens a store/connection in {scope.where} on every {scope.per} "
                "and never closes it",
            )


def _in_with(module: Module, node: ast.AST) -> bool:
    up = node
    while id(up) in module.parents:
        up = module.parents[id(up)]
        if isinstance(up, ast.withitem):
            return True
        if isinstance(up, ast.stmt):
            return False
    return False
