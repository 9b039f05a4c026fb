"""One result row, the same for every workload and contender, and the JSON files that hold them.

Each workload module returns a list of ``Row``; ``save()`` writes them to
``bench/results/peers-<workload>.json`` (or ``quick-peers-<workload>.json`` for a quick run) and
the report builds the Markdown tables and plots from those files.
"""

from __future__ import annotations

import json
import platform
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"

# status values: a failure or timeout is a result, shown as such, never dropped.
OK, TIMEOUT, ERROR, UNSUPPORTED = "ok", "timeout", "error", "unsupported"


@dataclass
class Row:
    workload: str  # "append", "window", "concurrency", "turn"
    contender: str  # e.g. "chatkeep sqlite", "LlamaIndex SQLiteChatStore", "raw sqlite3"
    family: str  # "chatkeep", "llamaindex", "langchain", "agents", "raw"
    backend: str  # "sqlite", "postgres", "redis", "file", "memory"
    durability: str  # what a crash keeps, e.g. "sqlite WAL synchronous=FULL"
    history: int  # messages already stored in the session when measured
    status: str = OK
    samples: int = 0
    median_ms: float | None = None
    p95_ms: float | None = None
    procs: int | None = None  # concurrency only
    same_session: bool | None = None  # concurrency only
    throughput_ops_s: float | None = None  # concurrency only
    errors: int | None = None
    lost: int | None = None
    duplicated: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def timing(samples: list[float]) -> dict[str, Any]:
    """Median and p95 in milliseconds of samples in seconds."""
    s = sorted(samples)
    return {
        "samples": len(s),
        "median_ms": statistics.median(s) * 1e3,
        "p95_ms": s[min(len(s) - 1, int(len(s) * 0.95))] * 1e3,
    }


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }


def save(workload: str, rows: list[Row], *, quick: bool, meta: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"{'quick-' if quick else ''}peers-{workload}.json"
    path = RESULTS / name
    doc = {
        "workload": workload,
        "quick": quick,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "meta": meta,
        "rows": [asdict(r) for r in rows],
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    return path
