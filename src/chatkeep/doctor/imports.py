"""Resolve names in a module to dotted import paths, through aliases.

``from llama_index.core.memory import ChatMemoryBuffer as CMB`` makes ``CMB.from_defaults``
resolve to ``llama_index.core.memory.ChatMemoryBuffer.from_defaults``; ``import
llama_index.core.memory as m`` makes ``m.ChatMemoryBuffer`` resolve the same way. Names that were
not imported resolve to themselves (``foo.bar`` stays ``foo.bar``) so local objects can still be
matched by method name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable


class ImportMap:
    """Every import in a module (at any depth: imports inside functions count too)."""

    def __init__(self, nodes: Iterable[ast.AST]) -> None:
        self.names: dict[str, str] = {}
        self.modules: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    self.modules.add(alias.name)
                    if alias.asname:
                        self.names[alias.asname] = alias.name
                    else:
                        top = alias.name.split(".")[0]
                        self.names.setdefault(top, top)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                self.modules.add(node.module)
                for alias in node.names:
                    if alias.name != "*":
                        self.names[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def imports(self, *prefixes: str) -> bool:
        """True when the module imports anything under one of these top-level packages."""
        return any(m == p or m.startswith(p + ".") for m in self.modules for p in prefixes)

    def resolve(self, node: ast.AST) -> str | None:
        """The dotted path of a Name/Attribute chain, aliases resolved; None for other nodes."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Call):  # e.g. index.as_chat_engine().chat -> "().as_chat..."
            inner = self.resolve(node.func)
            if inner is None:
                return None
            parts.append(inner + "()")
            return ".".join(reversed(parts))
        if not isinstance(node, ast.Name):
            return None
        parts.append(self.names.get(node.id, node.id))
        return ".".join(reversed(parts))


def call_name(imports: ImportMap, call: ast.Call) -> str:
    """The resolved dotted name of what ``call`` calls ('' when it is not a name chain)."""
    return imports.resolve(call.func) or ""


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == name:
            return kw.value
    return None


def const_str(node: ast.AST | None) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None
