"""One parsed module and the questions every rule asks about it."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property

from chatkeep.doctor.catalog import Construct, classify
from chatkeep.doctor.diagnostic import RULES, Diagnostic
from chatkeep.doctor.handlers import FunctionNode, Handler, find_handlers
from chatkeep.doctor.imports import ImportMap, call_name

CACHE_DECORATORS = ("cache", "lru_cache", "cache_resource", "cache_data", "singleton", "cached")
SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)


def walk(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node under ``nodes`` without entering nested functions, classes or lambdas."""
    stack = list(nodes)[::-1]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, SCOPES):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


@dataclass
class Module:
    path: str
    tree: ast.Module
    imports: ImportMap = field(init=False)
    nodes: list[ast.AST] = field(init=False)
    calls: list[ast.Call] = field(init=False)

    def __post_init__(self) -> None:
        self.nodes = list(ast.walk(self.tree))  # the one full walk; rules filter this list
        self.calls = [n for n in self.nodes if isinstance(n, ast.Call)]
        self.imports = ImportMap(self.nodes)

    @cached_property
    def parents(self) -> dict[int, ast.AST]:
        out: dict[int, ast.AST] = {}
        for node in self.nodes:
            for child in ast.iter_child_nodes(node):
                out[id(child)] = node
        return out

    def diag(self, node: ast.AST, code: str, message: str) -> Diagnostic:
        line = getattr(node, "lineno", 1)
        col = getattr(node, "col_offset", 0) + 1
        return Diagnostic(self.path, line, col, code, message, RULES[code].hint)

    @cached_property
    def handlers(self) -> list[Handler]:
        return find_handlers(self, self.path.replace("\\", "/").split("/")[-1])

    @cached_property
    def functions(self) -> dict[str, FunctionNode]:
        return {
            s.name: s
            for s in self.tree.body
            if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)
        }

    @cached_property
    def globals(self) -> dict[str, ast.expr]:
        """Module-level names and the value last assigned to them."""
        out: dict[str, ast.expr] = {}
        for stmt in walk(self.tree.body):
            if isinstance(stmt, ast.Assign):
                for target in stmt.targets:
                    if isinstance(target, ast.Name):
                        out[target.id] = stmt.value
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                if stmt.value is not None:
                    out[stmt.target.id] = stmt.value
        return out

    @cached_property
    def streamlit(self) -> bool:
        return self.imports.imports("streamlit")

    def constructs(self, nodes: Iterable[ast.AST]) -> Iterator[Construct]:
        for node in walk(nodes):
            if isinstance(node, ast.Call):
                found = classify(self.imports, node)
                if found is not None:
                    yield found

    def cached(self, fn: FunctionNode) -> bool:
        for dec in fn.decorator_list:
            name = self.imports.resolve(dec.func if isinstance(dec, ast.Call) else dec) or ""
            if name.rsplit(".", 1)[-1] in CACHE_DECORATORS:
                return True
        return False

    def helper(self, call: ast.Call) -> FunctionNode | None:
        """The same-module, uncached function ``call`` calls, if any."""
        if isinstance(call.func, ast.Name):
            fn = self.functions.get(call.func.id)
            if fn is not None and not self.cached(fn):
                return fn
        return None

    def statement(self, node: ast.AST) -> ast.AST:
        while not isinstance(node, ast.stmt) and id(node) in self.parents:
            node = self.parents[id(node)]
        return node

    def kept(self, node: ast.AST, fn: FunctionNode | None) -> bool:
        """True when what ``node`` builds outlives the call: stored in a global, in a
        module-level container, in ``st.session_state`` or ``app.state``, or passed to
        ``setdefault`` / ``st.cache_resource``."""
        up = node
        while id(up) in self.parents and not isinstance(up, ast.stmt):
            up = self.parents[id(up)]
            if isinstance(up, ast.Call):
                name = call_name(self.imports, up)
                if name.endswith(("setdefault", "cache_resource")):
                    return True
        targets: list[ast.expr] = []
        if isinstance(up, ast.Assign):
            targets = list(up.targets)
        elif isinstance(up, ast.AnnAssign | ast.AugAssign):
            targets = [up.target]
        if any(self._kept_target(t, fn) for t in targets):
            return True
        if fn is None:
            return False
        # memory = X(); ...; memories[user_id] = memory  (or a global / closure / app.state)
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        for stmt in walk(fn.body):
            if isinstance(stmt, ast.Assign) and isinstance(stmt.value, ast.Name):
                if stmt.value.id in names and any(self._kept_target(t, fn) for t in stmt.targets):
                    return True
            elif (
                isinstance(stmt, ast.Call)
                and isinstance(stmt.func, ast.Attribute)
                and stmt.func.attr in ("setdefault", "set")
                and any(isinstance(a, ast.Name) and a.id in names for a in stmt.args[1:])
                and self._kept_target(stmt.func.value, fn, container=True)
            ):
                return True
        return False

    def _kept_target(
        self, target: ast.expr, fn: FunctionNode | None, container: bool = False
    ) -> bool:
        """Does storing into ``target`` keep the value beyond this call?"""
        declared: set[str] = set()
        if fn is not None:
            for stmt in walk(fn.body):
                if isinstance(stmt, ast.Global | ast.Nonlocal):
                    declared.update(stmt.names)
        for t in ast.walk(target):
            if isinstance(t, ast.Name) and t.id in declared:
                return True
        if isinstance(target, ast.Subscript | ast.Attribute) or container:
            root = target
            while isinstance(root, ast.Subscript | ast.Attribute):
                root = root.value
            text = ast.unparse(target)
            if "session_state" in text or "app.state" in text or "user_session" in text:
                return True
            if (
                isinstance(root, ast.Name)
                and fn is not None
                and root.id not in _locals(fn)  # a global or a closure: outlives the call
                and self.imports.names.get(root.id) != "flask.g"  # per request
            ):
                return True
        return False

    def guarded(self, node: ast.AST) -> bool:
        """True when ``node`` sits under an ``if`` that tests ``st.session_state``."""
        up = node
        while id(up) in self.parents:
            up = self.parents[id(up)]
            if isinstance(up, ast.If) and "session_state" in ast.unparse(up.test):
                return True
        return False


def _locals(fn: FunctionNode) -> set[str]:
    names = {a.arg for a in ast.walk(fn.args) if isinstance(a, ast.arg)}
    for node in walk(fn.body):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


@dataclass
class Scope:
    """Code that runs once per request (a handler) or once per rerun (a Streamlit script)."""

    fn: FunctionNode | None
    body: list[ast.stmt]
    where: str  # "request handler `chat` (route '/chat')" / "the Streamlit script body"
    per: str  # "request" / "rerun" / "message"
    handler: Handler | None = None


def scopes(module: Module) -> list[Scope]:
    out = []
    for h in module.handlers:
        route = f", route {h.route!r}" if h.route else ""
        per = "message" if h.chat else "connection" if h.websocket else "request"
        out.append(Scope(h.node, h.node.body, f"{per} handler `{h.name}` ({h.how}{route})", per, h))
    if module.streamlit:
        out.append(Scope(None, module.tree.body, "the Streamlit script body", "rerun"))
    return out


def helper_calls(module: Module, scope: Scope) -> Iterator[tuple[ast.Call, FunctionNode, str]]:
    """Same-module helpers a scope calls (one level deep), with how they are reached."""
    fn = scope.fn
    for node in walk(scope.body):
        if isinstance(node, ast.Call):
            target = module.helper(node)
            if target is not None and target is not fn and not _skip(module, node, scope):
                yield node, target, f"{target.name}()"
    if fn is not None:  # FastAPI dependencies run on every request too
        defaults = [*fn.args.defaults, *(d for d in fn.args.kw_defaults if d is not None)]
        annotations = [a.annotation for a in ast.walk(fn.args) if isinstance(a, ast.arg)]
        for node in [*defaults, *(a for a in annotations if a is not None)]:
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and call_name(module.imports, call).endswith("Depends")
                    and call.args
                    and isinstance(call.args[0], ast.Name)
                ):
                    target = module.functions.get(call.args[0].id)
                    if target is not None and not module.cached(target):
                        yield call, target, f"dependency {target.name}()"


def _skip(module: Module, node: ast.AST, scope: Scope) -> bool:
    if scope.fn is None and module.guarded(node):
        return True
    return module.kept(node, scope.fn)


def live_constructs(module: Module, scope: Scope) -> Iterator[Construct]:
    """Constructions in a scope whose result does not outlive it."""
    for c in module.constructs(scope.body):
        if not _skip(module, c.node, scope):
            yield c


def helper_constructs(module: Module, helper: FunctionNode) -> Iterator[Construct]:
    for c in module.constructs(helper.body):
        if not (module.kept(c.node, helper) or module.guarded(c.node)):
            yield c
