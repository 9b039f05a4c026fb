"""The peers report's arithmetic and verdicts: a miss is never shown as met, a failure never
disappears, and ratios compare like with like (same backend)."""

from __future__ import annotations

from typing import Any

from bench.peers import report, targets


def row(contender: str, family: str, backend: str, history: int, ms: float | None, **kw: Any):
    out = {
        "workload": kw.pop("workload", "window"),
        "contender": contender,
        "family": family,
        "backend": backend,
        "durability": "d",
        "history": history,
        "status": "ok" if ms is not None else kw.pop("status", "timeout"),
        "median_ms": ms,
        "p95_ms": ms,
        "note": "",
        "extra": {},
    }
    out.update(kw)
    return out


def window_rows(ck_hi: float = 0.2) -> list[dict[str, Any]]:
    return [
        row("chatkeep sqlite", "chatkeep", "sqlite", 100, 0.2),
        row("chatkeep sqlite", "chatkeep", "sqlite", 10_000, ck_hi),
        row("raw sqlite3 FULL", "raw", "sqlite", 10_000, 0.1),
        row("Agents SQLiteSession", "agents", "sqlite", 10_000, 1.0),
        row("chatkeep ChatKeepSession (Agents)", "chatkeep", "sqlite", 10_000, 0.7),
        row("LlamaIndex RedisChatStore", "llamaindex", "redis", 10_000, 0.01),
        row("chatkeep redis", "chatkeep", "redis", 10_000, 0.5),
        row("LlamaIndex SQLiteChatStore", "llamaindex", "sqlite", 10_000, None),
        row("chatkeep ChatKeepMemory (LlamaIndex)", "chatkeep", "sqlite", 10_000, 0.6),
        row("LangChain SQLChatMessageHistory sqlite", "langchain", "sqlite", 10_000, 5.0),
    ]


def test_best_peer_is_taken_on_the_same_backend() -> None:
    r = report.ratios(window_rows())
    # the redis peer is faster in absolute terms but is not what sqlite is compared with
    assert r[("chatkeep sqlite", 10_000)]["best_peer"] == "Agents SQLiteSession"
    assert abs(r[("chatkeep sqlite", 10_000)]["vs_best_peer"] - 0.2) < 1e-9
    assert abs(r[("chatkeep sqlite", 10_000)]["vs_raw"] - 2.0) < 1e-9
    assert r[("chatkeep redis", 10_000)]["vs_best_peer"] == 50.0


def test_verdicts_say_missed_and_keep_the_numbers() -> None:
    verdicts = targets.check({"window": window_rows(ck_hi=0.3)})
    by = {v["target"]: v for v in verdicts}
    raw = by["window @ 10,000 on sqlite: chatkeep <= 2x raw"]
    assert raw["verdict"] == "MISSED" and "3.00x" in raw["detail"]
    flat = by["window on sqlite: flat 100 -> 10,000 (<= 1.25x)"]
    assert flat["verdict"] == "MISSED" and "1.50x" in flat["detail"]
    # the redis peer is faster than chatkeep redis: a miss, with both medians
    redis = by["window @ 10,000: chatkeep ahead of LlamaIndex RedisChatStore"]
    assert redis["verdict"] == "MISSED" and "0.500 ms vs 0.010 ms" in redis["detail"]
    # against a peer on sqlite the slower of Memory and the framework's adapter must win
    agents = by["window @ 10,000: chatkeep ahead of Agents SQLiteSession"]
    assert agents["verdict"] == "MET" and "ChatKeepSession" in agents["detail"]
    # a peer that timed out is beaten, and the verdict says it timed out
    timed_out = by["window @ 10,000: chatkeep ahead of LlamaIndex SQLiteChatStore"]
    assert timed_out["verdict"] == "MET" and "timeout" in timed_out["detail"]
    # no row for chatkeep's LangChain adapter: no data, not a pass
    lc = by["window @ 10,000: chatkeep ahead of LangChain SQLChatMessageHistory sqlite"]
    assert lc["verdict"] == "NO DATA"
    # no concurrency rows: the 4-writer target is not met by default
    writers = by["4 writers: 0 errors / lost / duplicated"]
    assert writers["verdict"] == "NO DATA"
    text = "\n".join(targets.render(verdicts))
    assert "**MISSED**" in text and "**NO DATA**" in text


def test_writers_target_counts_lost_and_duplicated() -> None:
    conc = [
        row(
            "chatkeep sqlite",
            "chatkeep",
            "sqlite",
            0,
            None,
            status="ok",
            procs=4,
            same_session=True,
            throughput_ops_s=500.0,
            errors=0,
            lost=0,
            duplicated=0,
        ),
        row(
            "chatkeep redis",
            "chatkeep",
            "redis",
            0,
            None,
            status="ok",
            procs=4,
            same_session=True,
            throughput_ops_s=900.0,
            errors=0,
            lost=1,
            duplicated=0,
        ),
        row(
            "Agents SQLiteSession",
            "agents",
            "sqlite",
            0,
            None,
            status="ok",
            procs=4,
            same_session=True,
            throughput_ops_s=600.0,
            errors=0,
            lost=0,
            duplicated=0,
        ),
    ]
    verdicts = {v["target"]: v["verdict"] for v in targets.check({"concurrency": conc})}
    assert (
        verdicts["chatkeep sqlite, 4 writers, one session: 0 errors / lost / duplicated"] == "MET"
    )
    assert (
        verdicts["chatkeep redis, 4 writers, one session: 0 errors / lost / duplicated"] == "MISSED"
    )
    ahead = "concurrency, 4 writers, one session: chatkeep ahead of Agents SQLiteSession"
    assert verdicts[ahead] == "MISSED"


def test_tables_show_failures_instead_of_dropping_them() -> None:
    doc = {"workload": "window", "rows": window_rows()}
    text = "\n".join(report.timed_table(doc))
    assert "LlamaIndex SQLiteChatStore" in text and "**timeout**" in text


def test_docs_section_replaces_only_the_measured_part(tmp_path: Any, monkeypatch: Any) -> None:
    import json

    from bench.peers import docs_section

    rows = window_rows()
    doc = {
        "workload": "window",
        "finished": "2026-01-02T03:04:05+00:00",
        "machine": {"python": "3.11", "cpus": 2, "platform": "p", "loadavg": [1.0, 2.0, 3.0]},
        "meta": {"command": "python -m bench.peers.run", "versions": {"x": "1"}, "seconds": 9},
        "rows": rows,
    }
    (tmp_path / "peers-window.json").write_text(json.dumps(doc))
    md = "# t\n\n## window\n\nFinished x\n\n| a |\n\n"
    md += "![peers-window-sqlite](peers-window-sqlite.png)\n"
    (tmp_path / "peers.md").write_text(md + "\n## Targets\n\n| target |\n")
    (tmp_path / "peers.json").write_text(json.dumps({"seconds": {"window": 9}}))
    monkeypatch.setattr(docs_section, "RESULTS", tmp_path)
    page = tmp_path / "benchmarks.md"
    page.write_text("intro\n### Latest full run\nold numbers\n### What the numbers say\nprose\n")
    docs_section.update(page)
    text = page.read_text()
    assert text.startswith("intro\n### Latest full run\n") and "old numbers" not in text
    assert text.endswith("### What the numbers say\nprose\n")
    assert "](../bench/results/peers-window-sqlite.png)" in text
    assert "#### The 3,000-token window" in text and "#### Targets" in text
    assert "load average 1.0, 2.0, 3.0" in text and "Finished x" not in text
