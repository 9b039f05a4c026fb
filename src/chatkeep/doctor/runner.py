"""Walk paths, parse each Python file once, run every rule, then join code with config."""

from __future__ import annotations

import ast
import fnmatch
import os
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from chatkeep.doctor import config, rules_lifecycle, rules_state, rules_usage
from chatkeep.doctor.context import Module
from chatkeep.doctor.diagnostic import RULES, Diagnostic

DEFAULT_EXCLUDES = (
    ".venv",
    "venv",
    ".env",
    "node_modules",
    ".git",
    ".hg",
    ".svn",
    "__pycache__",
    ".tox",
    ".nox",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
)
MODULE_RULES = (
    rules_lifecycle.check,
    rules_usage.check_stateless,
    rules_usage.check_shared_key,
    rules_state.check_half_persisted,
    rules_state.check_unclosed,
)


@dataclass
class Result:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    files: int = 0  # Python files parsed
    configs: int = 0  # config files scanned


def _excluded(rel: str, name: str, patterns: Iterable[str]) -> bool:
    return any(
        fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(rel, p) or rel.startswith(p + "/")
        for p in patterns
    )


def iter_files(
    paths: Iterable[str | os.PathLike[str]], exclude: Iterable[str] = ()
) -> Iterator[str]:
    """Python and config files under ``paths`` (files given explicitly are always included)."""
    patterns = [*DEFAULT_EXCLUDES, *exclude]
    for root in paths:
        root = os.fspath(root)
        if os.path.isfile(root):
            yield root
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            dirnames[:] = sorted(d for d in dirnames if not _excluded(rel_dir + d, d, patterns))
            for name in sorted(filenames):
                if (name.endswith(".py") or config.is_config(name)) and not _excluded(
                    rel_dir + name, name, patterns
                ):
                    yield os.path.normpath(os.path.join(dirpath, name))


def parse(path: str, source: bytes) -> ast.Module | Diagnostic:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escape sequences in user code
            return ast.parse(source, filename=path)
    except SyntaxError as exc:
        line = exc.lineno or 1
        return Diagnostic(
            path, line, exc.offset or 1, "CK001", f"cannot parse: {exc.msg}", RULES["CK001"].hint
        )
    except (ValueError, RecursionError, MemoryError) as exc:
        return Diagnostic(path, 1, 1, "CK001", f"cannot parse: {exc}", RULES["CK001"].hint)


def check_module(module: Module) -> Iterator[Diagnostic]:
    for rule in MODULE_RULES:
        yield from rule(module)


def check_source(source: str | bytes, path: str = "<string>") -> list[Diagnostic]:
    """Diagnostics for one Python source (CK106 included when the code itself reloads)."""
    data = source.encode() if isinstance(source, str) else source
    tree = parse(path, data)
    if isinstance(tree, Diagnostic):
        return [tree]
    module = Module(path, tree)
    found = list(check_module(module))
    triggers = list(config.scan_code(path, tree, module.imports, module.calls))
    found += _join(list(rules_state.in_process_state(module)), triggers)
    return sorted(set(found))


def _applies(trigger: config.Trigger, path: str) -> bool:
    base = os.path.dirname(os.path.abspath(trigger.path))
    return os.path.abspath(path).startswith(base + os.sep)


def _join(states: list[rules_state.State], triggers: list[config.Trigger]) -> list[Diagnostic]:
    out = []
    for s in states:
        hits = [t for t in triggers if _applies(t, s.path)]
        if hits:
            also = f" (and {len(hits) - 1} more)" if len(hits) > 1 else ""
            out.append(
                Diagnostic(
                    s.path,
                    s.line,
                    s.col,
                    "CK106",
                    f"{s.label} keeps chat history in this process, but the app runs with "
                    f"{hits[0].where()}{also}: a reload or another worker sees none of it",
                    RULES["CK106"].hint,
                )
            )
    return out


def check_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    select: Iterable[str] | None = None,
    ignore: Iterable[str] = (),
    exclude: Iterable[str] = (),
    progress: Callable[[str], None] | None = None,
) -> Result:
    """Run the doctor over files and directories (never imports or runs the code).

    ``progress`` is called with each file's path before it is read (for a progress bar)."""
    result = Result()
    states: list[rules_state.State] = []
    triggers: list[config.Trigger] = []
    for path in iter_files(paths, exclude):
        if progress is not None:
            progress(path)
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            result.diagnostics.append(
                Diagnostic(path, 1, 1, "CK001", f"cannot read: {exc}", RULES["CK001"].hint)
            )
            continue
        if not path.endswith(".py"):
            result.configs += 1
            triggers += config.scan_text(path, data.decode("utf-8", "replace"))
            continue
        result.files += 1
        tree = parse(path, data)
        if isinstance(tree, Diagnostic):
            result.diagnostics.append(tree)
            continue
        try:
            module = Module(path, tree)
            found = list(check_module(module))
            found_states = list(rules_state.in_process_state(module))
            found_triggers = list(config.scan_code(path, tree, module.imports, module.calls))
        except Exception as exc:  # a doctor bug must not end the run: report it, go on
            result.diagnostics.append(
                Diagnostic(
                    path,
                    1,
                    1,
                    "CK002",
                    f"could not analyse: {type(exc).__name__}: {exc}",
                    RULES["CK002"].hint,
                )
            )
            continue
        result.diagnostics += found
        states += found_states
        triggers += found_triggers
    result.diagnostics += _join(states, triggers)
    result.diagnostics = sorted({d for d in result.diagnostics if wanted(d.code, select, ignore)})
    return result


def wanted(code: str, select: Iterable[str] | None, ignore: Iterable[str]) -> bool:
    """``--select`` / ``--ignore`` accept codes or prefixes (``CK1`` means CK100-CK199)."""
    chosen = list(select) if select else [""]
    return any(code.startswith(s) for s in chosen) and not any(code.startswith(i) for i in ignore)
