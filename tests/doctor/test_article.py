"""The seed article's examples: broken ones flagged with the right codes, fixed ones clean."""

from __future__ import annotations

from pathlib import Path

from chatkeep.doctor import check_paths, check_source

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    """The seed article's examples, as files (excluded from ruff: they are user code)."""
    return (FIXTURES / name).read_text()


def found(source: str) -> list[tuple[int, str]]:
    return [(d.line, d.code) for d in check_source(source, "app.py")]


def test_broken_example_is_flagged_with_the_right_codes() -> None:
    assert found(fixture("article_broken.py")) == [
        (9, "CK101"),  # memory = ChatMemoryBuffer.from_defaults(...) in the handler
        (10, "CK102"),  # index = VectorStoreIndex.from_documents([]) per request
        (11, "CK102"),  # chat_engine = index.as_chat_engine(...) per request
    ]


def test_fixed_example_is_clean() -> None:
    assert found(fixture("article_fixed.py")) == []


def test_case3_helper_rebuilding_the_stack_is_flagged_at_the_call_site() -> None:
    diags = check_source(fixture("article_case3_broken.py"), "app.py")
    assert [(d.line, d.code) for d in diags] == [(12, "CK102")] * 3
    messages = " | ".join(d.message for d in diags)
    assert messages.count("build_chat(), called in request handler `chat` (@app.post") == 3
    for made in ("OpenAI()", "VectorStoreIndex.from_documents()", "as_chat_engine()"):
        assert f"with {made} (line " in messages
    assert found(fixture("article_case3_fixed.py")) == []


def test_case2_stateless_query_engine_for_a_conversation() -> None:
    assert found(fixture("article_case2_broken.py")) == [(8, "CK104")]
    assert found(fixture("article_case2_fixed.py")) == []


def test_cases_1_and_4_reload_and_workers_from_config(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(fixture("article_fixed.py"))  # module-level memory: fine in one process...
    assert check_paths([tmp_path]).diagnostics == []
    (tmp_path / "Procfile").write_text("web: uvicorn app:app --workers 4\n")
    (tmp_path / "Makefile").write_text("dev:\n\tuvicorn app:app --reload\n")
    diags = check_paths([tmp_path]).diagnostics
    assert [(d.path, d.line, d.code) for d in diags] == [(str(app), 7, "CK106")]
    assert "uvicorn --workers 4" in diags[0].message or "uvicorn --reload" in diags[0].message
    assert "(and 1 more)" in diags[0].message
    # the article's debugging advice, --workers 1, is not a trigger
    (tmp_path / "Procfile").write_text("web: uvicorn app:app --workers 1\n")
    (tmp_path / "Makefile").unlink()
    assert check_paths([tmp_path]).diagnostics == []
