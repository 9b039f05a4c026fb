"""The adapter examples run as files, in real processes (the Streamlit one: test_streamlit)."""

from __future__ import annotations

import re
from pathlib import Path

from test_examples import run_example


def test_langchain_chain_example(tmp_path: Path) -> None:
    out = run_example("langchain_chain.py", tmp_path)
    assert len(set(re.findall(r"\[pid (\d+)\]", out))) == 2, out  # two processes took part
    second = out.split("Turn 2")[1]
    assert "model got human: Hi! My name is Ada." in second  # turn 1, seen by process 2
    assert "model got ai: Nice to meet you, Ada." in second
    assert "The session holds 4 messages" in out
    again = run_example("langchain_chain.py", tmp_path)  # a fresh demo each run
    assert "The session holds 4 messages" in again


def test_openai_agents_session_example(tmp_path: Path) -> None:
    out = run_example("openai_agents_session.py", tmp_path)
    assert len(set(re.findall(r"\[pid (\d+)\]", out))) == 2, out
    assert "agent: The tool says: Sunny, 24 C in Paris." in out
    assert "agent: You asked about Paris." in out  # the new process saw turn 1
    assert "the session now holds 6 items" in out
