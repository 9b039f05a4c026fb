"""How fast `chatkeep doctor` reads a large real codebase, against parsing alone.

    python bench/doctor_speed.py                 # the installed llama_index + langchain_core
    python bench/doctor_speed.py PATH... --rounds 5

The machine is shared and noisy, so the figure that matters is the ratio of the doctor's time
to a baseline measured in the same run, interleaved round by round: reading every file and
``ast.parse``-ing it (the least any AST linter must do). Files per second are printed too.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import statistics
import time
import warnings
from pathlib import Path

from chatkeep.doctor import check_paths
from chatkeep.doctor.runner import iter_files


def default_roots() -> list[Path]:
    roots = []
    for name in ("llama_index", "langchain_core"):
        spec = importlib.util.find_spec(name)
        if spec and spec.submodule_search_locations:
            roots.append(Path(next(iter(spec.submodule_search_locations))))
    return roots


def parse_only(files: list[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for f in files:
            try:
                ast.parse(Path(f).read_bytes(), filename=f)
            except (SyntaxError, ValueError):
                pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="*", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    roots = args.paths or default_roots()
    files = [f for f in iter_files(roots) if f.endswith(".py")]
    doctor_times, parse_times = [], []
    findings = 0
    for r in range(args.rounds):
        order = ("doctor", "parse") if r % 2 == 0 else ("parse", "doctor")
        for which in order:
            start = time.perf_counter()
            if which == "doctor":
                findings = len(check_paths(roots).diagnostics)
                doctor_times.append(time.perf_counter() - start)
            else:
                parse_only(files)
                parse_times.append(time.perf_counter() - start)
    doctor, parse = statistics.median(doctor_times), statistics.median(parse_times)
    print(f"roots: {', '.join(str(r) for r in roots)}")
    print(f"{len(files)} Python files, {findings} finding(s), {args.rounds} rounds (medians)")
    print(f"doctor:        {doctor:.2f} s  ({len(files) / doctor:.0f} files/s)")
    print(f"ast.parse only: {parse:.2f} s  ({len(files) / parse:.0f} files/s)")
    print(f"doctor / parse-only: {doctor / parse:.2f}x")


if __name__ == "__main__":
    main()
