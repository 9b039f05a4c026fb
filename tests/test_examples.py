"""Every example and every Python block in the README runs, in real processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_example(name: str, tmp_path: Path) -> str:
    env = {**os.environ, "CHATKEEP_URL": f"sqlite:///{tmp_path}/ex.db"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / name)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_quickstart_remembers_across_processes(tmp_path: Path) -> None:
    first = run_example("quickstart.py", tmp_path)
    pids = set(re.findall(r"\[pid (\d+)\]", first))
    assert len(pids) == 2, first  # two different processes took part
    assert "bot:  Your name is Ada." in first
    assert "holds 4 messages" in first
    second = run_example("quickstart.py", tmp_path)  # a third and fourth process
    assert "holds 8 messages" in second


def test_async_app(tmp_path: Path) -> None:
    out = run_example("async_app.py", tmp_path)
    assert "ada: 10 messages" in out and "bob: 10 messages" in out
    lines = [ln.split(None, 2) for ln in out.splitlines() if ln.startswith("  ")]
    for (_, role_q, q), (_, role_a, a) in zip(lines[::2], lines[1::2], strict=True):
        assert (role_q, role_a) == ("user", "assistant") and a.startswith(f"echo: {q} ")


def test_window_example(tmp_path: Path) -> None:
    out = run_example("window.py", tmp_path)
    assert "81 messages stored; window: 1 pinned +" in out
    assert "Summary of the earlier conversation" in out


def test_llamaindex_fastapi_continues_after_a_server_restart(tmp_path: Path) -> None:
    out = run_example("llamaindex_fastapi.py", tmp_path)
    pids = set(re.findall(r"\[server pid (\d+)\]", out))
    assert len(pids) == 2, out  # two different server processes answered
    assert "the LLM saw the earlier turn from the first server: True" in out
    assert "holds 2 messages" in out and "holds 4 messages" in out


PRELUDE = """
import chatkeep
from chatkeep import Message
def call_your_llm(messages):
    return f"seen {len(messages)} messages"
llm = call_your_llm
store = chatkeep.open_store()
"""
CHECKS = {
    "README.md": (
        "assert handle_request('u1', 'hi') == 'seen 2 messages'\n"
        "assert handle_request('u1', 'again') == 'seen 4 messages'\n"
    ),
    "docs/tokenizers.md": "assert store.tokenizer.name == 'tiktoken:cl100k_base'\n",
    "docs/server.md": "assert 'You told me your name is Ada.' in answer.json()['reply']\n",
    "docs/adapters.md": (
        "handle_chat('ada', 'My name is Ada.')\n"
        "assert 'My name is Ada.' in handle_chat('ada', 'What is my name?')\n"
        "assert [m.content for m in buffer.get_all()][0] == 'My name is Ada.'\n"
        "from llama_index.core.llms import ChatMessage\n"
        "memory.put(ChatMessage(role='user', content='hello'))\n"
        "from chatkeep.adapters.llamaindex_db import DurableMemory\n"
        "assert DurableMemory.from_defaults(session_id='ada', store=store).get_all()[-1]"
        ".content == 'hello'\n"
        "assert [m.text for m in store.read('user-7:t1')] == ['hello', 'I have seen 1 messages']\n"
        "assert [m.role for m in store.read('agent-user-1')] == ['user', 'assistant']\n"
    ),
    "docs/deployment.md": (
        "from fastapi.testclient import TestClient\n"
        "with TestClient(app) as client:\n"
        "    assert client.post('/chat/u1', json={'text': 'hi'}).json() == "
        "{'reply': 'seen 1 messages'}\n"
        "    assert client.post('/chat/u1', json={'text': 'again'}).json() == "
        "{'reply': 'seen 3 messages'}\n"
    ),
    "docs/doctor.md": (
        "from fastapi.testclient import TestClient\n"
        "client = TestClient(app)\n"
        "for n in (2, 4):\n"
        "    r = client.post('/chat', params={'user_id': 'u1', 'text': 'hi'})\n"
        "    assert r.json() == {'messages': n}, r.text\n"
    ),
    "docs/stores.md": (
        "assert [m.text for m in store.read('trip')] == "
        "['Summary: a trip to Oslo', 'And Bergen?']\n"
        "assert [m.seq for m in result.messages] == [1, 2]\n"
    ),
    "docs/reliability.md": "assert b'4711' not in raw\n",
    "docs/memory.md": (
        "assert [m.text for m in memory.history()] == "
        "['What did I ask before?', 'seen 2 messages']\n"  # after memory.clear()
    ),
}


@pytest.mark.parametrize("doc", sorted(CHECKS))
def test_python_blocks_in_docs_run(doc: str, tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
    assert blocks
    code = PRELUDE + "\n".join(blocks) + "\n" + CHECKS[doc] + "store.close()\n"
    env = {**os.environ, "CHATKEEP_URL": f"sqlite:///{tmp_path}/doc.db"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr


def test_every_doc_that_shows_python_is_run() -> None:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    showing = {str(p.relative_to(ROOT)) for p in docs if "```python" in p.read_text()}
    assert showing == set(CHECKS)


def test_server_client_across_a_restart(tmp_path: Path) -> None:
    out = run_example("server_client.py", tmp_path)
    pids = set(re.findall(r"\[server pid (\d+)\]", out))
    assert len(pids) == 2, out  # two server processes took part
    assert "You told me your name is Ada." in out
    assert "holds 4 messages" in out
