"""``chatkeep doctor PATH...``: the static checker as a command (registered in cli.py)."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from chatkeep.doctor import report
from chatkeep.doctor.diagnostic import RULES
from chatkeep.doctor.runner import check_paths, iter_files
from chatkeep.doctor.stores import check_store
from chatkeep.errors import InvalidInput

FORMATS = ("text", "json", "sarif")


def _codes(values: list[str] | None, option: str) -> list[str]:
    codes = [c.strip().upper() for v in values or [] for c in v.split(",") if c.strip()]
    for code in codes:
        if not any(known.startswith(code) for known in RULES):
            raise InvalidInput(
                f"{option}: unknown rule code {code!r}; known: {', '.join(sorted(RULES))}"
            )
    return codes


def _wanted(code: str, chosen: list[str], skipped: list[str]) -> bool:
    return (not chosen or any(code.startswith(c) for c in chosen)) and not any(
        code.startswith(c) for c in skipped
    )


def doctor(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Files and directories to check (Python and config)."),
    ] = None,
    output_format: Annotated[
        str, typer.Option("--format", "-f", help="text, json or sarif (SARIF 2.1.0).")
    ] = "text",
    select: Annotated[
        list[str] | None,
        typer.Option(help="Only these codes or prefixes (CK101,CK103 or CK1); repeatable."),
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option(help="Skip these codes or prefixes; repeatable.")
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(help="Skip paths matching this glob (besides .venv, node_modules, .git)."),
    ] = None,
    fix_hints: Annotated[
        bool, typer.Option("--fix-hints", help="Show how to fix each finding the chatkeep way.")
    ] = False,
    store: Annotated[
        list[str] | None,
        typer.Option(
            "--store",
            help="Also open this store URL (never writing) and report CK201 if it is not "
            "durable, CK202 if unreachable; repeatable.",
        ),
    ] = None,
) -> None:
    """Find the lifecycle mistakes that make chat memory forget. Reads code, never runs it.

    Exit status: 0 clean, 1 problems found, 2 usage error.

    Example: chatkeep doctor app/ Procfile --format sarif > doctor.sarif

    Example: chatkeep doctor --store redis://localhost:6379/0
    """
    paths = paths or []
    if not paths and not store:
        raise InvalidInput("give files or directories to check, or --store URL")
    if output_format not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}, not {output_format!r}")
    chosen, skipped = _codes(select, "--select"), _codes(ignore, "--ignore")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise InvalidInput(f"no such file or directory: {', '.join(missing)}")
    started = time.perf_counter()
    err = Console(stderr=True)
    with Progress(
        TextColumn("chatkeep doctor"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not err.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task("checking", total=sum(1 for _ in iter_files(paths, exclude or ())))
        result = check_paths(
            paths,
            select=chosen or None,
            ignore=skipped,
            exclude=exclude or (),
            progress=lambda _path: bar.advance(task),
        )
    store_diags = [d for d in map(check_store, store or []) if d is not None]
    store_diags = [d for d in store_diags if _wanted(d.code, chosen, skipped)]
    result = dataclasses.replace(result, diagnostics=[*result.diagnostics, *store_diags])
    elapsed = time.perf_counter() - started
    if output_format == "json":
        sys.stdout.write(
            report.as_json(
                result.diagnostics, result.files, fix_hints=fix_hints, configs=result.configs
            )
        )
    elif output_format == "sarif":
        sys.stdout.write(report.sarif(result.diagnostics, result.files))
    else:
        sys.stdout.write(
            report.text(
                result.diagnostics, result.files, fix_hints=fix_hints, stores=len(store or [])
            )
        )
        sys.stdout.write(f" in {elapsed:.2f}s")
    sys.stdout.write("\n")
    if result.diagnostics:
        raise SystemExit(1)
