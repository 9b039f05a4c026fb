"""The peer benchmark's concurrency and full-turn workloads measure what they claim.

Concurrency: the counting is checked on made-up read-backs with known defects, then the whole
workload runs for real (spawned writer processes, a common start, a fresh process reading back)
on chatkeep's SQLite store and the raw sqlite3 baseline, which must lose and duplicate nothing.
Turn: real framework turns (chatkeep, the Agents SDK, LangChain and LlamaIndex adapters) pass
the check that the LLM double saw the previous turn, and a contender that skips the history
is caught by it (an ``error`` row, not a fast one).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import rows as R  # noqa: E402
from bench.peers import turn, turn_contenders  # noqa: E402
from bench.peers.concurrency import count, run  # noqa: E402
from bench.peers.writers import text  # noqa: E402


def rows_of(*markers: str, seqs: list[int] | None = None) -> list[tuple[str, int | None]]:
    seq = seqs or list(range(1, len(markers) + 1))
    return [(text(m), s) for m, s in zip(markers, seq, strict=True)]


def test_count_finds_lost_duplicated_reordered_and_gaps() -> None:
    acked: dict[int, list[str] | None] = {
        0: ["w0-0000", "w0-0001", "w0-0002"],
        1: ["w1-0000", "w1-0001"],
    }
    read = {
        "s": rows_of(
            "w0-0000",
            "w1-0001",
            "w1-0000",
            "w0-0002",
            "w0-0002",
            "w9-0000",
            seqs=[1, 2, 3, 5, 6, 7],
        )
    }
    c = count(acked, read, ordered=True)
    assert c["acked"] == 5
    assert c["lost"] == 1  # w0-0001
    assert c["duplicated"] == 1  # w0-0002 twice
    assert c["order_violations"] == 1  # w1-0000 after w1-0001
    assert c["seq_gaps"] == 3  # 5, 6, 7 where 4, 5, 6 belong
    assert c["unacked_present"] == 1  # w9-0000: stored though nobody was told so
    assert c["read_errors"] == {}


def test_count_clean_run_and_unreadable_store() -> None:
    acked: dict[int, list[str] | None] = {0: ["w0-0000", "w0-0001"], 1: None}
    clean = count(acked, {"s": rows_of("w0-0000", "w1-0000", "w0-0001")}, ordered=True)
    assert (clean["lost"], clean["duplicated"], clean["order_violations"]) == (0, 0, 0)
    assert clean["seq_gaps"] == 0
    assert clean["unacked_present"] == 0  # writer 1 was killed: its acks are unknown
    broken = count(acked, {"s": "JSONDecodeError: Expecting value"}, ordered=False)
    assert broken["lost"] == 2 and broken["read_errors"]


@pytest.mark.slow
def test_two_real_writers_lose_nothing_on_chatkeep_sqlite_file_and_raw_sqlite() -> None:
    names = ["chatkeep sqlite", "chatkeep file", "raw sqlite3 FULL"]
    rows = run(True, progress=lambda s: None, only=names, procs_list=(2,), m=6, duration=30)
    assert sorted((r.contender, r.same_session) for r in rows) == sorted(
        (n, same) for n in names for same in (False, True)
    )
    for r in rows:
        assert r.status == R.OK, r
        assert (r.errors, r.lost, r.duplicated) == (0, 0, 0), r
        assert r.extra["acked"] == r.extra["present"] == 12
        assert r.extra["order_violations"] == 0
        assert r.throughput_ops_s and r.throughput_ops_s > 0
        assert "synchronous=FULL" in r.durability or r.contender == "chatkeep file"
        if r.contender.startswith("chatkeep"):
            assert r.extra["seq_gaps"] == 0


def test_turns_are_checked_against_what_the_llm_double_saw() -> None:
    tc = turn_contenders

    class Forgetful(tc.CkSqlite):
        """Answers without loading the history: must not be timed as a fast contender."""

        name = "forgetful"

        def turn(self, sid: str, question: str) -> str:
            tc.SEEN["prompt"] = [{"role": "user", "content": question}]
            return tc.REPLY["text"]

    honest = [tc.CkSqlite, tc.CkLlama, tc.CkLangChain, tc.CkLcHistory, tc.CkAgents, tc.AgentsSqlite]
    rows = turn.run(
        True, progress=lambda s: None, classes=[*honest, Forgetful], sizes=(100,), turns={100: 2}
    )
    by = {r.contender: r for r in rows}
    assert len(rows) == len(by) == 7
    for cls in honest:
        r = by[cls.name]
        assert (r.status, r.samples, r.history) == (R.OK, 2, 100), r
        assert r.median_ms and r.median_ms > 0
    assert "synchronous=FULL" in by["chatkeep sqlite"].durability
    bad = by["forgetful"]
    assert bad.status == R.ERROR and bad.samples == 0
    assert "lacks [h100-99]" in bad.note
