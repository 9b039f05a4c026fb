"""The doctor over real code: chatkeep's own examples and source are clean, and the installed
llama_index and langchain_core trees are read to the end without a crash."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from chatkeep.doctor import check_paths

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"


def test_chatkeep_examples_and_source_are_clean() -> None:
    result = check_paths([ROOT / "examples", ROOT / "src"])
    assert result.files >= 20
    assert result.diagnostics == []


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    assert spec is not None and spec.submodule_search_locations, name
    return Path(next(iter(spec.submodule_search_locations)))


def test_large_real_codebases_complete() -> None:
    roots = [_package_dir("llama_index"), _package_dir("langchain_core")]
    result = check_paths(roots)
    assert result.files > 500  # every .py file was parsed
    unparseable = [d for d in result.diagnostics if d.code == "CK001"]
    assert unparseable == []  # the installed packages are valid Python for this interpreter


def test_progress_is_reported_for_every_file_read(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "Procfile").write_text("web: uvicorn app:app\n")
    (tmp_path / "notes.txt").write_text("not read\n")
    seen: list[str] = []
    result = check_paths([tmp_path], progress=seen.append)
    assert sorted(Path(p).name for p in seen) == ["Procfile", "a.py"]
    assert (result.files, result.configs) == (1, 1)


def test_a_rule_that_fails_is_reported_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chatkeep.doctor import runner

    def broken_rule(module: object) -> list[object]:
        raise RecursionError("maximum recursion depth exceeded")

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text((FIXTURES / "article_broken.py").read_text())
    monkeypatch.setattr(runner, "MODULE_RULES", (*runner.MODULE_RULES, broken_rule))
    found = [(Path(d.path).name, d.code) for d in check_paths([tmp_path]).diagnostics]
    assert found == [("a.py", "CK002"), ("b.py", "CK002")]
    monkeypatch.setattr(runner, "MODULE_RULES", runner.MODULE_RULES[:-1])
    assert {d.code for d in check_paths([tmp_path]).diagnostics} == {"CK101", "CK102"}
