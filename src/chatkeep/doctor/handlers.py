"""Find the functions a web framework calls once per request (or a chat UI once per message).

Decorated routes (FastAPI/Starlette/Flask/Quart/Sanic/aiohttp/Django Ninja routers and apps,
Litestar ``@get``, DRF ``@api_view``, Chainlit ``@cl.on_message``), routes registered by call
(``add_api_route``, ``add_url_rule``, ``add_route``, Starlette ``Route``, Django ``path``,
Gradio ``ChatInterface(fn)`` and ``.submit(fn)`` / ``.click(fn)`` events), class-based views
(``View``, ``MethodView``, ``APIView``, ``HTTPEndpoint`` ... methods named after HTTP verbs)
and, in a ``views.py``, module functions whose first parameter is ``request``.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatkeep.doctor.imports import ImportMap, call_name, const_str, keyword

if TYPE_CHECKING:
    from chatkeep.doctor.context import Module

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
Adder = Callable[[FunctionNode, "str | None", str, bool], None]

WEB_PACKAGES = (
    "fastapi",
    "starlette",
    "flask",
    "quart",
    "sanic",
    "litestar",
    "django",
    "ninja",
    "rest_framework",
    "aiohttp",
    "falcon",
    "bottle",
    "tornado",
    "robyn",
    "blacksheep",
)
ROUTE_METHODS = {
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "head",
    "options",
    "trace",
    "route",
    "api_route",
    "websocket",
    "websocket_route",
    "middleware",  # @app.middleware("http") runs on every request too
}
APP_NAMES = {"app", "router", "api", "bp", "blueprint", "routes"}
DECORATORS = {
    "litestar.get": False,
    "litestar.post": False,
    "litestar.put": False,
    "litestar.patch": False,
    "litestar.delete": False,
    "litestar.route": False,
    "rest_framework.decorators.api_view": False,
    "django.views.decorators.http.require_http_methods": False,
    "django.views.decorators.http.require_POST": False,
    "django.views.decorators.http.require_GET": False,
    "chainlit.on_message": True,  # value: the handler is a chat turn by construction
}
REGISTRARS = {
    "add_api_route": 1,
    "add_route": 1,
    "add_api_websocket_route": 1,
    "add_websocket_route": 1,
    "add_get": 1,
    "add_post": 1,
    "add_put": 1,
    "add_patch": 1,
    "add_delete": 1,
    "add_url_rule": 2,
}
GRADIO_EVENTS = {"submit", "click", "change", "input"}
ROUTE_CALLS = {
    "starlette.routing.Route",
    "starlette.routing.WebSocketRoute",
    "django.urls.path",
    "django.urls.re_path",
    "aiohttp.web.get",
    "aiohttp.web.post",
}
VIEW_BASES = {
    "View",
    "MethodView",
    "APIView",
    "GenericAPIView",
    "ViewSet",
    "GenericViewSet",
    "ModelViewSet",
    "HTTPEndpoint",
    "WebSocketEndpoint",
    "Resource",
    "TemplateView",
    "FormView",
    "HTTPMethodView",
}
VIEW_METHODS = {
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "dispatch",
    "list",
    "create",
    "retrieve",
    "update",
    "partial_update",
    "destroy",
    "on_receive",
}


@dataclass
class Handler:
    node: FunctionNode
    route: str | None
    how: str  # "@app.post('/chat')", "add_api_route", "class ChatView" ...
    chat: bool = False  # a chat turn by construction (Chainlit on_message, Gradio ChatInterface)

    @property
    def websocket(self) -> bool:
        """Runs once per connection, which may be a whole conversation."""
        return "websocket" in self.how.lower()

    @property
    def name(self) -> str:
        return self.node.name


def _route_of(call: ast.Call) -> str | None:
    return const_str(call.args[0] if call.args else keyword(call, "path") or keyword(call, "rule"))


def find_handlers(module: Module, filename: str) -> list[Handler]:
    tree, imports = module.tree, module.imports
    web = imports.imports(*WEB_PACKAGES)
    functions: dict[str, FunctionNode] = {}
    classes: dict[str, ast.ClassDef] = {}
    found: dict[int, Handler] = {}

    def add(fn: FunctionNode, route: str | None, how: str, chat: bool = False) -> None:
        found.setdefault(id(fn), Handler(fn, route, how, chat))

    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            functions[stmt.name] = stmt
            args = stmt.args.posonlyargs + stmt.args.args
            if filename == "views.py" and args and args[0].arg == "request":
                add(stmt, None, "Django view")
        elif isinstance(stmt, ast.ClassDef):
            classes[stmt.name] = stmt
            bases = {(imports.resolve(b) or "").rsplit(".", 1)[-1] for b in stmt.bases}
            for item in stmt.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    if bases & VIEW_BASES and item.name in VIEW_METHODS:
                        add(item, None, f"class-based view {stmt.name}")

    for node in module.nodes:  # decorated routes at any depth (app factories included)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.decorator_list:
            _decorated(node, imports, web, add)

    gradio = imports.imports("gradio")
    for node in module.calls:
        target: ast.expr | None = None
        how = ""
        if gradio and isinstance(node.func, ast.Attribute) and node.func.attr in GRADIO_EVENTS:
            target = keyword(node, "fn") or (node.args[0] if node.args else None)
            if isinstance(target, ast.Name) and target.id in functions:
                add(functions[target.id], None, f"gradio .{node.func.attr}(fn)", False)
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in REGISTRARS:
            pos = REGISTRARS[node.func.attr]
            target = keyword(node, "view_func") or keyword(node, "endpoint")
            if target is None and len(node.args) > pos:
                target = node.args[pos]
            how = node.func.attr
        else:
            name = call_name(imports, node)
            if name in ROUTE_CALLS:
                target = keyword(node, "endpoint") or keyword(node, "view")
                if target is None and len(node.args) > 1:
                    target = node.args[1]
                how = name.rsplit(".", 1)[-1]
            elif name == "gradio.ChatInterface":
                target = keyword(node, "fn") or (node.args[0] if node.args else None)
                if isinstance(target, ast.Name) and target.id in functions:
                    add(functions[target.id], None, "gr.ChatInterface(fn)", chat=True)
                continue
        if isinstance(target, ast.Name) and target.id in functions:
            add(functions[target.id], _route_of(node), how)
        elif (
            isinstance(target, ast.Call)
            and isinstance(target.func, ast.Attribute)
            and target.func.attr == "as_view"
            and isinstance(target.func.value, ast.Name)
            and target.func.value.id in classes
        ):
            cls = classes[target.func.value.id]
            for item in cls.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    if item.name in VIEW_METHODS:
                        add(item, _route_of(node), f"class-based view {cls.name}")
    return list(found.values())


def _decorated(fn: FunctionNode, imports: ImportMap, web: bool, add: Adder) -> None:
    for dec in fn.decorator_list:
        call = dec if isinstance(dec, ast.Call) else None
        func = dec.func if isinstance(dec, ast.Call) else dec
        resolved = imports.resolve(func) or ""
        route = _route_of(call) if call is not None else None
        if resolved in DECORATORS:
            add(fn, route, "@" + resolved, DECORATORS[resolved])
        elif isinstance(func, ast.Attribute) and func.attr in ROUTE_METHODS:
            base = func.value
            base_name = base.id if isinstance(base, ast.Name) else ""
            if web or base_name.lower() in APP_NAMES:
                add(fn, route, f"@{base_name or '...'}.{func.attr}", False)
