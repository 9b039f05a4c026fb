"""memory:// warns where it cannot survive what the app does; durable stores never warn."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys, warnings
{setup}
import chatkeep
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    chatkeep.open_store("{url}").close()
print([type(w.message).__name__ for w in caught])
"""


def run(url: str, setup: str = "") -> str:
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(url=url, setup=setup)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def test_memory_store_warns_under_a_server(tmp_path: object) -> None:
    server = "import uvicorn"  # a process that runs a web server
    assert run("memory://", server) == "['EphemeralStoreWarning']"
    assert run("memory://") == "[]"
    assert run(f"sqlite:///{tmp_path}/x.db", server) == "[]"
