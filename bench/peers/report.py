"""Turn ``bench/results/peers-*.json`` into ``peers.md``, a ``peers.json`` summary and PNG plots.

    python -m bench.peers.report [--quick]

Tables give the median (p95) in milliseconds of every contender at every history size, its
status (``timeout`` / ``error`` / ``skipped`` are shown, never dropped), and at each size the
ratio to the raw driver on the same backend and to the best peer measured in the same run.
Plots: ``peers-<workload>-<backend>.png``, latency against history size on log-log axes, one
line per contender, timeouts and errors marked. The targets (``bench.peers.targets``) are
checked from the same rows and printed MET / MISSED with their numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.peers import targets
from bench.peers.rows import RESULTS

BASELINE = {"sqlite": "raw sqlite3 FULL", "postgres": "raw psycopg", "redis": "raw redis"}
TIMED = ("append", "window")  # workloads with latency against history size


def load(quick: bool) -> dict[str, dict[str, Any]]:
    prefix = "quick-peers-" if quick else "peers-"
    docs = {}
    for path in sorted(RESULTS.glob(f"{prefix}*.json")):
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and "rows" in doc and "workload" in doc:
            docs[doc["workload"]] = doc
    return docs


def _ms(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:,.1f}"


def _cell(r: dict[str, Any]) -> str:
    if r["status"] == "ok":
        return f"{_ms(r['median_ms'])} ({_ms(r['p95_ms'])})"
    return f"**{r['status']}**"


def is_peer(r: dict[str, Any]) -> bool:
    return r["family"] not in ("chatkeep", "raw")


def ratios(rows: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (contender, history): ratio to the raw driver of its backend and to the best peer."""
    ok = [r for r in rows if r["status"] == "ok" and r["median_ms"]]
    by_size: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in ok:
        by_size[r["history"]].append(r)
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for size, group in by_size.items():
        raw = {r["contender"]: r["median_ms"] for r in group if r["family"] == "raw"}
        for r in group:
            # the best peer on the same backend: the same durability, not a faster promise
            peers = [p for p in group if is_peer(p) and p["backend"] == r["backend"]]
            best = min(peers, key=lambda p: p["median_ms"]) if peers else None
            base = raw.get(BASELINE.get(r["backend"], ""))
            out[(r["contender"], size)] = {
                "vs_raw": r["median_ms"] / base if base else None,
                "vs_best_peer": r["median_ms"] / best["median_ms"] if best else None,
                "best_peer": best["contender"] if best else None,
            }
    return out


def timed_table(doc: dict[str, Any]) -> list[str]:
    rows = doc["rows"]
    sizes = sorted({r["history"] for r in rows})
    names = list(dict.fromkeys(r["contender"] for r in rows))
    cells = {(r["contender"], r["history"]): r for r in rows}
    rat = ratios(rows)
    head = "| contender | durability | " + " | ".join(f"{s:,}" for s in sizes) + " |"
    lines = [head, "|---|---|" + "---|" * len(sizes)]
    for name in names:
        first = next(r for r in rows if r["contender"] == name)
        out = []
        for s in sizes:
            r = cells.get((name, s))
            if r is None:
                out.append("")
                continue
            text = _cell(r)
            q = rat.get((name, s))
            if q and q["vs_raw"] is not None and first["family"] != "raw":
                text += f" · {q['vs_raw']:.2f}x raw"
            out.append(text)
        lines.append(f"| {name} | {first['durability']} | " + " | ".join(out) + " |")
    lines += [
        "",
        "Ratio to the best peer on the same backend at each size (< 1: faster than every "
        "peer there):",
        "",
    ]
    lines += ["| contender | " + " | ".join(f"{s:,}" for s in sizes) + " |"]
    lines += ["|---|" + "---|" * len(sizes)]
    for name in names:
        if not name.startswith("chatkeep"):
            continue
        out = []
        for s in sizes:
            q = rat.get((name, s))
            out.append(
                f"{q['vs_best_peer']:.3f}x ({q['best_peer']})" if q and q["vs_best_peer"] else "—"
            )
        lines.append(f"| {name} | " + " | ".join(out) + " |")
    notes = [r for r in rows if r["status"] != "ok" or r["note"]]
    if notes:
        lines += ["", "Status notes:", ""]
        lines += [
            f"- {r['contender']} at {r['history']:,}: {r['status']}: {r['note']}" for r in notes
        ]
    return lines


def generic_table(doc: dict[str, Any]) -> list[str]:
    """Any other workload (concurrency, turn): every field that some row fills."""
    rows = doc["rows"]
    skip = {"workload", "extra", "family"}
    keys = [k for k in rows[0] if k not in skip and any(r.get(k) not in (None, "") for r in rows)]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    for r in rows:
        vals = []
        for k in keys:
            v = r.get(k)
            vals.append(_ms(v) if isinstance(v, float) else ("" if v is None else str(v)))
        lines.append("| " + " | ".join(vals) + " |")
    return lines


def plot(doc: dict[str, Any], out_dir: Path, prefix: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["rows"]
    paths = []
    for backend in sorted({r["backend"] for r in rows}):
        group = [r for r in rows if r["backend"] == backend]
        fig, ax = plt.subplots(figsize=(11.5, 5.5))
        for name in dict.fromkeys(r["contender"] for r in group):
            mine = sorted((r for r in group if r["contender"] == name), key=lambda r: r["history"])
            ok = [r for r in mine if r["status"] == "ok" and r["median_ms"]]
            style = (
                "-" if name.startswith("chatkeep") else ("--" if name.startswith("raw") else ":")
            )
            line = None
            if ok:
                (line,) = ax.plot(
                    [r["history"] for r in ok],
                    [r["median_ms"] for r in ok],
                    style,
                    marker="o",
                    label=name,
                    linewidth=2.2 if name.startswith("chatkeep") else 1.4,
                )
            for r in mine:
                if r["status"] in ("timeout", "error"):
                    y = r["extra"].get("deadline_s", 0) * 1e3 or (ok[-1]["median_ms"] if ok else 1)
                    ax.plot(
                        [r["history"]],
                        [y],
                        marker="x",
                        markersize=12,
                        mew=3,
                        color=line.get_color() if line else "red",
                        label=None if line else f"{name} ({r['status']})",
                    )
                    deadline = r["extra"].get("deadline_s")
                    ax.annotate(
                        f"{r['status']} (> {deadline:g} s)" if deadline else r["status"],
                        (r["history"], y),
                        textcoords="offset points",
                        xytext=(6, 4),
                        fontsize=8,
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("messages already stored in the session")
        ax.set_ylabel("median latency per call (ms, log)")
        ax.set_title(f"{doc['workload']} on {backend}: latency vs history size")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
        fig.tight_layout()
        path = out_dir / f"{prefix}{doc['workload']}-{backend}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def build(quick: bool) -> tuple[str, dict[str, Any]]:
    docs = load(quick)
    prefix = "quick-peers-" if quick else "peers-"
    lines = [f"# chatkeep vs the peers{' (quick run)' if quick else ''}", ""]
    summary: dict[str, Any] = {"quick": quick, "workloads": {}}
    for name, doc in docs.items():
        m = doc["machine"]
        lines += [
            f"## {name}",
            "",
            f"Finished {doc['finished']}; Python {m['python']}; {m['cpus']} CPUs; load average "
            f"{', '.join(f'{x:.2f}' for x in m['loadavg'])}; `{doc['meta'].get('command', '')}`.",
            "",
        ]
        if name in TIMED:
            lines += ["Median (p95) ms per call; ratio to the raw driver on the same backend.", ""]
            lines += timed_table(doc)
            for path in plot(doc, RESULTS, prefix):
                lines += ["", f"![{path.stem}]({path.name})"]
            summary["workloads"][name] = {
                "finished": doc["finished"],
                "ratios": {f"{c} @ {s}": v for (c, s), v in ratios(doc["rows"]).items()},
            }
        else:
            lines += generic_table(doc)
            summary["workloads"][name] = {"finished": doc["finished"]}
        lines.append("")
    verdicts = targets.check({k: v["rows"] for k, v in docs.items()})
    summary["targets"] = verdicts
    lines += targets.render(verdicts)
    summary["meta"] = {k: v.get("meta", {}) for k, v in docs.items()}
    seconds: dict[str, float] = {}
    for name, doc in docs.items():  # workloads run together share one time
        meta = doc.get("meta", {})
        if "seconds" in meta:
            seconds["+".join(sorted({name, meta.get("shared_with", name)}))] = meta["seconds"]
    summary["seconds"] = seconds
    return "\n".join(lines) + "\n", summary


def dumps(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=1) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="build the peers report from the JSON rows")
    parser.add_argument("--quick", action="store_true", help="report the quick run's files")
    parser.add_argument(
        "--docs", action="store_true", help="also rewrite docs/benchmarks.md's measured part"
    )
    args = parser.parse_args()
    quick = args.quick
    from bench.peers import venv

    venv.reexec("bench.peers.report", sys.argv[1:])  # matplotlib lives in the peers' venv
    md, summary = build(quick)
    stem = "quick-peers" if quick else "peers"
    (RESULTS / f"{stem}.md").write_text(md)
    (RESULTS / f"{stem}.json").write_text(dumps(summary))
    print(md)
    print(f"wrote {RESULTS / (stem + '.md')}", file=sys.stderr)
    if args.docs and not quick:
        from bench.peers import docs_section

        docs_section.update()
        print(f"rewrote the measured part of {docs_section.DOCS.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
