"""The stored form reads and writes the same under the oldest pydantic llama-index-core admits.

The test suite itself runs under the newest pydantic pip resolves. Here a subprocess runs with
pydantic 2.8.2 (installed with pip into a temporary folder placed first on PYTHONPATH, the
project's venv for everything else): what one version wrote, the other reads back equal.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

import pydantic

import chatkeep
from chatkeep.adapters.llamaindex import ChatKeepChatStore, ChatKeepMemory

OLDEST = ("2.8.2", "2.20.1")  # pydantic and the pydantic-core it pins
TESTS = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def old_pydantic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("pydantic-oldest")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            f"pydantic=={OLDEST[0]}",
            f"pydantic-core=={OLDEST[1]}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        if os.environ.get("CI"):
            pytest.fail(f"could not install pydantic {OLDEST[0]}: {proc.stderr[-2000:]}")
        pytest.skip(f"package index unreachable, pydantic {OLDEST[0]} not installed")
    return target


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    import pydantic
    assert pydantic.VERSION == sys.argv[4], pydantic.VERSION
    import chatkeep
    from adapters.test_llamaindex_convert import conversation
    from chatkeep.adapters.llamaindex import ChatKeepChatStore, ChatKeepMemory

    with chatkeep.open_store(sys.argv[1]) as store:
        chat_store = ChatKeepChatStore(store)
        assert chat_store.get_messages("from-new") == conversation(), "read mismatch"
        chat_store.set_messages("from-old", conversation())
        memory = ChatKeepMemory.from_defaults(session_id="from-new", store=store)
        back = ChatKeepMemory.from_dict(memory.to_dict())
        assert back.get_all() == conversation()
    print("ok", pydantic.VERSION)
    """
)


@pytest.mark.slow
def test_oldest_and_newest_pydantic_read_each_other(old_pydantic: Path, tmp_path: Path) -> None:
    from adapters.test_llamaindex_convert import conversation

    url = f"sqlite:///{tmp_path}/x.db"
    with chatkeep.open_store(url) as store:
        ChatKeepChatStore(store).set_messages("from-new", conversation())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(old_pydantic), str(TESTS)])}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, url, "", str(TESTS), OLDEST[0]],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["ok", OLDEST[0]]
    assert pydantic.VERSION != OLDEST[0]  # this process runs the newest one
    with chatkeep.open_store(url) as store:
        assert ChatKeepChatStore(store).get_messages("from-old") == conversation()
        memory = ChatKeepMemory.from_defaults(session_id="from-old", store=store)
        assert ChatKeepMemory.from_dict(memory.to_dict()).get_all() == conversation()
