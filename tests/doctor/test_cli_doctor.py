"""`chatkeep doctor` through the installed console script: exit codes, formats, options."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chatkeep.doctor import RULES

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    """The seed article's examples, as files (excluded from ruff: they are user code)."""
    return (FIXTURES / name).read_text()


def doctor(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("chatkeep", path=str(Path(sys.executable).parent))
    assert exe, "the chatkeep console script is not installed"
    return subprocess.run(
        [exe, "doctor", *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "broken.py").write_text(fixture("article_broken.py"))
    (tmp_path / "fixed.py").write_text(fixture("article_fixed.py"))
    (tmp_path / "syntax_error.py").write_text("def chat(:\n    pass\n")
    (tmp_path / "latin1.py").write_bytes(b"# -*- coding: latin-1 -*-\nname = '\xe9'\n")
    venv = tmp_path / ".venv" / "lib"
    venv.mkdir(parents=True)
    (venv / "vendored.py").write_text(fixture("article_broken.py"))  # skipped by default
    return tmp_path


def test_text_output_exit_1_and_unparseable_file_reported(project: Path) -> None:
    out = doctor(".", cwd=project)
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert "broken.py:9:14: CK101 " in out.stdout
    assert "broken.py:10:13: CK102 " in out.stdout
    assert "syntax_error.py:1:10: CK001 cannot parse" in out.stdout
    hint_after = lines[lines.index(next(ln for ln in lines if ": CK101 " in ln)) + 1]
    assert hint_after.startswith("    hint: ")
    assert ".venv" not in out.stdout  # skipped by default
    assert (
        "4 problem(s) in 2 file(s) (CK001 x1, CK101 x1, CK102 x2); 4 file(s) checked" in lines[-1]
    )


def test_clean_exit_0(project: Path) -> None:
    out = doctor(str(project / "fixed.py"), str(project / "latin1.py"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 file(s) checked, no problems found" in out.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--select", "CK999"],
        ["--ignore", "XX1"],
        ["--format", "xml"],
        ["does-not-exist"],
        [],
    ],
)
def test_usage_errors_exit_2(project: Path, args: list[str]) -> None:
    out = doctor(
        *(args if args == [] or args[0] == "does-not-exist" else [".", *args]), cwd=project
    )
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout == ""


def test_select_ignore_exclude_and_fix_hints(project: Path) -> None:
    out = doctor(".", "--select", "CK101", "--fix-hints", cwd=project)
    assert out.returncode == 1
    assert " CK101 " in out.stdout and " CK102 " not in out.stdout and "CK001" not in out.stdout
    assert "    | " in out.stdout and "chatkeep.Memory(user_id, store=store)" in out.stdout
    out = doctor(".", "--ignore", "CK1,CK001", cwd=project)
    assert out.returncode == 0, out.stdout
    out = doctor(".", "--exclude", "broken.py", "--exclude", "syntax_*", cwd=project)
    assert out.returncode == 0, out.stdout
    out = doctor(".", "--select", "CK10", "--exclude", "broken.py", cwd=project)
    assert out.returncode == 0, out.stdout


def test_json(project: Path) -> None:
    out = doctor(".", "--format", "json", "--fix-hints", cwd=project)
    assert out.returncode == 1
    data = json.loads(out.stdout)
    assert (data["files"], data["configs"], data["count"]) == (4, 0, 4)
    row = next(r for r in data["diagnostics"] if r["code"] == "CK101")
    assert set(row) == {"path", "line", "col", "code", "message", "hint", "severity", "name", "fix"}
    assert (row["line"], row["col"], row["severity"]) == (9, 14, "error")


def test_sarif_2_1_0(project: Path) -> None:
    out = doctor(".", "--format", "sarif", cwd=project)
    assert out.returncode == 1
    log = json.loads(out.stdout)
    # required by SARIF 2.1.0: version, runs[]; run.tool.driver.name; result.message.text
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "chatkeep doctor"
    ids = [r["id"] for r in driver["rules"]]
    assert ids == sorted(RULES)
    assert len(run["results"]) == 4
    for result in run["results"]:
        assert result["message"]["text"]
        assert driver["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        (loc,) = result["locations"]
        region = loc["physicalLocation"]["region"]
        assert region["startLine"] >= 1 and region["startColumn"] >= 1
        assert not Path(loc["physicalLocation"]["artifactLocation"]["uri"]).is_absolute()


def test_config_files_given_explicitly(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(fixture("article_fixed.py"))
    (tmp_path / "Procfile").write_text("web: gunicorn -w 4 app:app\n")
    out = doctor(str(tmp_path / "app.py"), str(tmp_path / "Procfile"))
    assert out.returncode == 1 and " CK106 " in out.stdout
    assert "gunicorn --workers 4" in out.stdout
