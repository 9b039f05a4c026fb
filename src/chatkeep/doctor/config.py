"""Find what runs an app in several processes or restarts it: ``--reload``, ``--workers N``.

Scans Procfiles, Dockerfiles, compose files, Makefiles, pyproject.toml, shell scripts and
``gunicorn.conf.py`` line by line, and Python code for ``uvicorn.run(..., reload=True |
workers=N)``, Flask's ``app.run(debug=True)`` and gunicorn config assignments.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterator
from dataclasses import dataclass

from chatkeep.doctor.imports import ImportMap, call_name, keyword

CONFIG_GLOBS = (
    "Procfile",
    "Procfile.*",
    "Dockerfile",
    "Dockerfile.*",
    "*.dockerfile",
    "docker-compose*.yml",
    "docker-compose*.yaml",
    "compose*.yml",
    "compose*.yaml",
    "Makefile",
    "makefile",
    "GNUmakefile",
    "*.mk",
    "justfile",
    "pyproject.toml",
    "*.sh",
    "*.bash",
)
SERVERS = re.compile(r"\b(uvicorn|gunicorn|hypercorn|granian|fastapi|flask|daphne)\b")
WORKERS = re.compile(
    r"(?:--workers|--processes|(?<![\w-])-w)(?:\s*=\s*|\s+|(?=\d))"
    r"(\$\(\(.*?\)\)|\$\([^)]*\)|\S+)"
)
CONCURRENCY = re.compile(r"\bWEB_CONCURRENCY\s*[=:]\s*[\"']?(\d+)")


@dataclass(frozen=True)
class Trigger:
    """Something that restarts the app or runs it in several processes."""

    path: str
    line: int
    what: str  # "--reload", "--workers 4", "uvicorn.run(reload=True)" ...

    def where(self) -> str:
        return f"{self.what} ({self.path}:{self.line})"


def is_config(filename: str) -> bool:
    return any(fnmatch.fnmatchcase(filename, pat) for pat in CONFIG_GLOBS)


def _many(value: str) -> bool:
    value = value.strip("\"',;]")
    if value.isdigit():
        return int(value) > 1
    return "nproc" in value or "cpu_count" in value


def scan_text(path: str, text: str) -> Iterator[Trigger]:
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        flat = re.sub(r"[\[\]\",]", " ", line)  # exec-form CMD ["uvicorn", "--workers", "4"]
        m = CONCURRENCY.search(flat)
        if m and int(m.group(1)) > 1:
            yield Trigger(path, n, f"WEB_CONCURRENCY={m.group(1)}")
        server = SERVERS.search(flat)
        if not server:
            continue
        tokens = flat.split()
        if "--reload" in tokens or "--reload=true" in tokens:
            yield Trigger(path, n, f"{server.group(1)} --reload")
        elif server.group(1) == "fastapi" and re.search(r"\bfastapi\s+dev\b", flat):
            yield Trigger(path, n, "fastapi dev (reloads on every change)")
        elif server.group(1) == "flask" and re.search(r"\brun\b.*--(debug|reload)\b", flat):
            yield Trigger(path, n, "flask run --debug (reloader on)")
        for m in WORKERS.finditer(flat):
            if _many(m.group(1)):
                yield Trigger(path, n, f"{server.group(1)} --workers {m.group(1)}")


def _const(node: ast.expr | None) -> object:
    return node.value if isinstance(node, ast.Constant) else None


def scan_code(
    path: str, tree: ast.Module, imports: ImportMap, calls: list[ast.Call]
) -> Iterator[Trigger]:
    filename = path.replace("\\", "/").rsplit("/", 1)[-1]
    if filename.startswith("gunicorn") and filename.endswith(".py"):
        for stmt in tree.body:
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
                name = target.id if isinstance(target, ast.Name) else ""
                value = _const(stmt.value)
                if name == "workers" and (
                    (isinstance(value, int) and value > 1) or "cpu_count" in ast.unparse(stmt)
                ):
                    yield Trigger(
                        path, stmt.lineno, f"gunicorn workers = {ast.unparse(stmt.value)}"
                    )
                elif name == "reload" and value is True:
                    yield Trigger(path, stmt.lineno, "gunicorn reload = True")
    for node in calls:
        name = call_name(imports, node)
        if name in ("uvicorn.run", "hypercorn.run"):
            if _const(keyword(node, "reload")) is True:
                yield Trigger(path, node.lineno, "uvicorn.run(reload=True)")
            workers = _const(keyword(node, "workers"))
            if isinstance(workers, int) and workers > 1:
                yield Trigger(path, node.lineno, f"uvicorn.run(workers={workers})")
        elif (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "run"
            and imports.imports("flask")
            and (
                _const(keyword(node, "debug")) is True
                or _const(keyword(node, "use_reloader")) is True
            )
        ):
            yield Trigger(path, node.lineno, "app.run(debug=True) (Flask's reloader)")
