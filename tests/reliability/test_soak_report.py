"""`make soak`'s report: a bad figure anywhere makes the run fail, and the summary says so."""

from __future__ import annotations

from typing import Any

from tests.reliability.soak import markdown, totals, verdict


def report(**crash: Any) -> dict[str, Any]:
    clean = {"backend": "sqlite-full", "kills": 3, "acked": 9, "lost": 0, "duplicated": 0,
             "integrity_checks": 3, "async_kills": 2, "async_acked": 5,
             "problems": []}  # fmt: skip
    soak = {"backend": "sqlite", "processes": 8, "threads": 4, "seconds": 5.0, "ops_total": 10,
            "ops_per_second": 2.0, "ops": {"append": 10}, "errors": {"turn:ConflictError": 1},
            "async_processes": 4, "async_ops": {"append": 7}, "async_ops_total": 7,
            "unexpected_errors": 0, "violations": 0, "lost": 0, "duplicated": 0,
            "problems": []}  # fmt: skip
    out: dict[str, Any] = {"seed": 1, "crash": [{**clean, **crash}], "soak": [soak], "faults": []}
    out |= {"finished_at": "now", "minutes": 1, "chatkeep": "0", "python": "3", "cpus": 2}
    out["totals"] = totals(out)
    out["failures"] = verdict(out)
    return out


def test_a_clean_run_passes() -> None:
    clean = report()
    assert clean["failures"] == [] and clean["totals"]["integrity_ok"] is True
    assert "Verdict: **pass**" in markdown(clean)


def test_the_report_says_how_much_was_async() -> None:
    out = report()
    assert out["totals"]["async_kills"] == 2 and out["totals"]["async_acked"] == 5
    assert out["totals"]["async_ops_total"] == 7 and out["totals"]["ops_total"] == 10
    text = markdown(out)
    assert "(2 of them of async writers" in text and "7 of them by async workers" in text
    assert "| sqlite-full | 3 (0 / 0) | 2 (5) |" in text
    assert "| sqlite | 8 x 4 | 4 | 5.0 | 10 (7) |" in text
    assert "- append: 10 (7)" in text


def test_any_loss_duplicate_or_problem_fails_the_run() -> None:
    for bad in ({"lost": 1}, {"duplicated": 2}, {"problems": ["integrity_check says x"]}):
        failed = report(**bad)
        assert failed["failures"], bad
        assert "Verdict: **FAIL**" in markdown(failed)
    assert report(problems=["integrity_check says x"])["totals"]["integrity_ok"] is False
