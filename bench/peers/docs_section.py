"""Rewrite the measured part of docs/benchmarks.md from the latest full run's files.

    python -m bench.peers.report --docs

Replaces what lies between ``### Latest full run`` and ``### What the numbers say`` in the
"chatkeep vs the peers" section with the run's header (date, machine, load, versions, time),
every workload's tables from ``bench/results/peers.md`` and the plots (linked from the docs
folder), and the targets table. The prose around it is written by hand: re-read it (and the
run-by-run table of near-threshold verdicts) after a new run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bench.peers.rows import RESULTS

DOCS = RESULTS.parents[1] / "docs" / "benchmarks.md"
START, END = "### Latest full run", "### What the numbers say"
TITLES = {
    "append": "Append one ~75-token message",
    "window": "The 3,000-token window",
    "concurrency": "Concurrent writers",
    "turn": "A full chat turn",
}


def _sections(md: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", md, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _body(text: str) -> str:
    out = []
    for line in text.strip().splitlines():
        if line.startswith("Finished "):
            continue
        image = re.match(r"!\[(.+)\]\((.+)\)", line)
        if image:
            line = f"![{image.group(1)}](../bench/results/{image.group(2)})"
        out.append("Notes:" if line == "Status notes:" else line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def measured() -> str:
    md = (RESULTS / "peers.md").read_text()
    summary: dict[str, Any] = json.loads((RESULTS / "peers.json").read_text())
    docs = {
        p.stem.removeprefix("peers-"): json.loads(p.read_text())
        for p in sorted(RESULTS.glob("peers-*.json"))
    }
    first = next(iter(docs.values()))
    m, meta = first["machine"], first["meta"]
    seconds = ", ".join(f"{k} {v} s" for k, v in summary.get("seconds", {}).items())
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    finished = max(d["finished"] for d in docs.values()).replace("T", " ").replace("+00:00", "")
    load = ", ".join(f"{x:.1f}" for x in m["loadavg"])
    lines = [
        START,
        "",
        f"`{meta.get('command', 'python -m bench.peers.run')}` (what `make bench` runs), finished "
        f"{finished} UTC; {m['cpus']} CPUs (the shared, noisy development machine: other jobs ran "
        f"at the same time; load average {load} (1, 5, 15 min) when the run ended); "
        f"{m['platform']}; Python {m['python']}. Time: {seconds}.",
        f"Versions (from the lock, read back at run time): {versions}.",
        "",
        "Rows marked **timeout** / **error** / **skipped** are results too (see the notes under "
        "each table). The second table of each timed workload is the ratio to the fastest peer "
        "on the same backend.",
        "",
    ]
    sections = _sections(md)
    for name, text in sections.items():
        if name == "Targets":
            continue
        lines += [f"#### {TITLES.get(name, name)}", "", _body(text), ""]
    if "Targets" in sections:
        lines += ["#### Targets", "", _body(sections["Targets"]), ""]
    return "\n".join(lines)


def update(path: Path = DOCS) -> None:
    doc = path.read_text()
    start, end = doc.index(START), doc.index(END)
    path.write_text(doc[:start] + measured() + "\n" + doc[end:])
