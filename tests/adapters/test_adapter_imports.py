"""Adapters import their framework lazily and name the pip extra when it is missing."""

from __future__ import annotations

import json

import pytest

from adapters.support import run_py

CASES = [
    ("langchain", "langchain_core", "chatkeep[langchain]"),
    ("openai_agents", "agents", "chatkeep[agents]"),
    ("streamlit", "streamlit", "chatkeep[streamlit]"),
]


@pytest.mark.parametrize(("module", "framework", "extra"), CASES)
def test_a_missing_framework_names_the_extra(module: str, framework: str, extra: str) -> None:
    out = run_py(
        """
        import sys
        sys.modules[sys.argv[2]] = None  # as if it were not installed
        import chatkeep
        try:
            __import__("chatkeep.adapters." + sys.argv[1])
        except chatkeep.MissingDependency as exc:
            assert isinstance(exc, ImportError)
            print(exc)
        """,
        module,
        framework,
    )
    assert f"pip install '{extra}'" in out


def test_importing_the_adapters_package_loads_no_framework() -> None:
    out = run_py("import sys, json, chatkeep.adapters; print(json.dumps(sorted(sys.modules)))")
    loaded = {m.split(".")[0] for m in json.loads(out)}
    assert not loaded & {"langchain_core", "agents", "streamlit", "openai", "pydantic"}
