"""The issue's targets, checked from the rows of one run; every verdict carries its numbers.

* chatkeep at 10,000 messages is ahead of every peer on every workload at equal durability:
  on each backend, the slower of chatkeep's ``Memory`` row and its adapter for the peer's
  framework must beat the peer (a peer that timed out or failed counts as beaten, and says so);
* append <= 1.5x the raw driver on the same backend, at 10,000;
* window <= 2x the raw indexed read on the same backend, at 10,000, and flat: the median at
  10,000 is at most ``FLAT``x the median at 100;
* 0 errors / lost / duplicated with 4 writers (the concurrency rows, when that workload ran).

A target with no rows to check says ``NO DATA``: that is a miss, not a pass.
"""

from __future__ import annotations

from typing import Any

AT = 10_000
FLAT = 1.25
MAIN = {
    "sqlite": "chatkeep sqlite",
    "postgres": "chatkeep postgres",
    "redis": "chatkeep redis",
    "file": "chatkeep file",
}
ADAPTER = {
    "llamaindex": "chatkeep ChatKeepMemory (LlamaIndex)",
    "langchain": "chatkeep ChatKeepMessageHistory (LangChain)",
    "agents": "chatkeep ChatKeepSession (Agents)",
}
RAW = {"sqlite": "raw sqlite3 FULL", "postgres": "raw psycopg", "redis": "raw redis"}
Verdict = dict[str, Any]


def _at(rows: list[dict[str, Any]], name: str, size: int) -> dict[str, Any] | None:
    return next((r for r in rows if r["contender"] == name and r["history"] == size), None)


def _ok(r: dict[str, Any] | None) -> bool:
    return r is not None and r["status"] == "ok" and r["median_ms"] is not None


def _verdict(target: str, met: bool | None, detail: str) -> Verdict:
    return {
        "target": target,
        "verdict": "NO DATA" if met is None else ("MET" if met else "MISSED"),
        "detail": detail,
    }


def ahead(workload: str, rows: list[dict[str, Any]]) -> list[Verdict]:
    out = []
    peers = [r for r in rows if r["history"] == AT and r["family"] not in ("chatkeep", "raw")]
    for peer in peers:
        ours = [_at(rows, MAIN.get(peer["backend"], ""), AT)]
        adapter = ADAPTER.get(peer["family"])
        if adapter and peer["backend"] == "sqlite":
            ours.append(_at(rows, adapter, AT))
        name = f"{workload} @ {AT:,}: chatkeep ahead of {peer['contender']}"
        if any(r is None for r in ours):
            out.append(_verdict(name, None, "no chatkeep row to compare"))
            continue
        ours_ok = [r for r in ours if _ok(r)]
        if len(ours_ok) < len(ours):
            bad = ", ".join(f"{r['contender']}: {r['status']}" for r in ours if r and not _ok(r))
            out.append(_verdict(name, False, f"chatkeep {bad}"))
            continue
        slow = max(ours_ok, key=lambda r: r["median_ms"])
        if not _ok(peer):
            out.append(
                _verdict(
                    name,
                    True,
                    f"peer {peer['status']} ({peer['note']}); "
                    f"{slow['contender']} {slow['median_ms']:.3f} ms",
                )
            )
            continue
        ratio = slow["median_ms"] / peer["median_ms"]
        out.append(
            _verdict(
                name,
                ratio < 1.0,
                f"{slow['contender']} {slow['median_ms']:.3f} ms "
                f"vs {peer['median_ms']:.3f} ms = {ratio:.3f}x",
            )
        )
    if not peers:
        out.append(
            _verdict(f"{workload} @ {AT:,}: chatkeep ahead of every peer", None, "no peer rows")
        )
    return out


def vs_raw(workload: str, rows: list[dict[str, Any]], limit: float) -> list[Verdict]:
    out = []
    for backend, main in MAIN.items():
        if backend not in RAW:
            continue
        ck, raw = _at(rows, main, AT), _at(rows, RAW[backend], AT)
        name = f"{workload} @ {AT:,} on {backend}: chatkeep <= {limit:g}x raw"
        if not (_ok(ck) and _ok(raw)):
            out.append(
                _verdict(name, None, f"chatkeep {ck and ck['status']}, raw {raw and raw['status']}")
            )
            continue
        assert ck is not None and raw is not None
        ratio = ck["median_ms"] / raw["median_ms"]
        out.append(
            _verdict(
                name,
                ratio <= limit,
                f"{ck['median_ms']:.3f} ms vs {raw['median_ms']:.3f} ms = {ratio:.2f}x",
            )
        )
    return out


def flat(rows: list[dict[str, Any]]) -> list[Verdict]:
    out = []
    for backend, main in MAIN.items():
        if backend not in RAW:
            continue
        lo, hi = _at(rows, main, 100), _at(rows, main, AT)
        name = f"window on {backend}: flat 100 -> {AT:,} (<= {FLAT:g}x)"
        if not (_ok(lo) and _ok(hi)):
            out.append(_verdict(name, None, "missing rows"))
            continue
        assert lo is not None and hi is not None
        ratio = hi["median_ms"] / lo["median_ms"]
        out.append(
            _verdict(
                name,
                ratio <= FLAT,
                f"{lo['median_ms']:.3f} ms at 100, "
                f"{hi['median_ms']:.3f} ms at {AT:,} = {ratio:.2f}x",
            )
        )
    return out


def writers(rows: list[dict[str, Any]]) -> list[Verdict]:
    mine = [r for r in rows if r["family"] == "chatkeep" and (r.get("procs") or 0) >= 4]
    if not mine:
        return [_verdict("4 writers: 0 errors / lost / duplicated", None, "no concurrency rows")]
    out = []
    for r in mine:
        bad = [r.get("errors"), r.get("lost"), r.get("duplicated")]
        where = "one session" if r.get("same_session") else "own sessions"
        out.append(
            _verdict(
                f"{r['contender']}, {r['procs']} writers, {where}: 0 errors / lost / duplicated",
                r["status"] == "ok" and all(v == 0 for v in bad),
                f"status {r['status']}; errors {bad[0]}, lost {bad[1]}, duplicated {bad[2]}",
            )
        )
    return out


def ahead_throughput(rows: list[dict[str, Any]]) -> list[Verdict]:
    """Concurrency: with the most writers, chatkeep's throughput beats each peer's on the same
    backend and the same session layout (and a peer that lost or duplicated is not ahead)."""
    top = max((r.get("procs") or 0 for r in rows), default=0)
    out = []
    for peer in rows:
        if peer["family"] in ("chatkeep", "raw") or peer.get("procs") != top:
            continue
        ours = next(
            (
                r
                for r in rows
                if r["contender"] == MAIN.get(peer["backend"])
                and r.get("procs") == top
                and r.get("same_session") == peer.get("same_session")
            ),
            None,
        )
        where = "one session" if peer.get("same_session") else "own sessions"
        name = f"concurrency, {top} writers, {where}: chatkeep ahead of {peer['contender']}"
        if ours is None or ours["status"] != "ok" or not ours.get("throughput_ops_s"):
            out.append(
                _verdict(name, None if ours is None else False, "chatkeep row missing/failed")
            )
            continue
        mine = ours["throughput_ops_s"]
        theirs = peer.get("throughput_ops_s") if peer["status"] == "ok" else None
        if not theirs:
            out.append(_verdict(name, True, f"peer {peer['status']}; chatkeep {mine:.0f}/s"))
            continue
        out.append(
            _verdict(name, mine > theirs, f"{mine:.0f}/s vs {theirs:.0f}/s = {mine / theirs:.2f}x")
        )
    return out


def check(docs: dict[str, list[dict[str, Any]]]) -> list[Verdict]:
    out: list[Verdict] = []
    for workload, rows in docs.items():
        if workload in ("append", "window", "turn") and rows:
            out += ahead(workload, rows)
    out += vs_raw("append", docs.get("append", []), 1.5)
    out += vs_raw("window", docs.get("window", []), 2.0)
    out += flat(docs.get("window", []))
    out += ahead_throughput(docs.get("concurrency", []))
    out += writers(docs.get("concurrency", []))
    return out


def render(verdicts: list[Verdict]) -> list[str]:
    met = sum(v["verdict"] == "MET" for v in verdicts)
    lines = [
        "## Targets",
        "",
        f"{met} of {len(verdicts)} met. Every miss is listed; NO DATA counts as a miss.",
        "",
        "| target | verdict | numbers |",
        "|---|---|---|",
    ]
    for v in verdicts:
        mark = v["verdict"] if v["verdict"] == "MET" else f"**{v['verdict']}**"
        lines.append(f"| {v['target']} | {mark} | {v['detail']} |")
    return lines
