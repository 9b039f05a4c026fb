"""memory:// warns where it cannot survive what the app does; durable stores never warn."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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


def test_durable_stores_never_warn_and_memory_warns_only_when_serving(tmp_path: object) -> None:
    assert run("memory://") == "[]"
    assert run(f"sqlite:///{tmp_path}/x.db", "import uvicorn") == "[]"
    # warning under a real server: the uvicorn and Streamlit tests below


def test_importing_a_server_or_the_agents_sdk_is_not_running_one() -> None:
    # the OpenAI Agents SDK imports uvicorn; that alone must not make memory:// warn
    assert run("memory://", "import agents\nassert 'uvicorn' in sys.modules") == "[]"
    assert run("memory://", "import uvicorn, streamlit") == "[]"


RECORDER = """
import os, warnings
import chatkeep

def record(url="memory://"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chatkeep.open_store(url).close()
    names = [type(w.message).__name__ for w in caught]
    with open(os.environ["RECORD_TO"], "a") as f:
        f.write(repr(names) + "\\n")
"""

UVICORN_APP = (
    RECORDER
    + """
record()  # at import: `uvicorn app:app` imports this module inside its server

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                record()  # inside the running server
                record("sqlite:///" + os.environ["RECORD_TO"] + ".db")  # durable: no warning
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
"""
)


def _wait_for_lines(path: Path, n: int, proc: subprocess.Popen[str]) -> list[str]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"expected {n} records, got {path.read_text() if path.exists() else ''}")


def test_memory_store_warns_in_a_real_uvicorn_server(tmp_path: Path) -> None:
    (tmp_path / "ckapp.py").write_text(UVICORN_APP)
    record_to = tmp_path / "records.txt"
    env = {**os.environ, "RECORD_TO": str(record_to)}
    cmd = [sys.executable, "-m", "uvicorn", "ckapp:app", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, text=True, stderr=subprocess.DEVNULL)
    try:
        lines = _wait_for_lines(record_to, 3, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert lines == ["['EphemeralStoreWarning']"] * 2 + ["[]"]


def test_memory_store_warns_under_uvicorn_run_from_a_plain_script(tmp_path: Path) -> None:
    # argv[0] is the script, not uvicorn: the warning comes from uvicorn's serving loop being
    # on the stack, so opening the store before the server starts does not warn
    script = UVICORN_APP.replace("record()  # at import", "pass  # at import") + (
        "\nrecord()  # before the server runs: fine\n"
        "import uvicorn\n"
        "server = uvicorn.Server(uvicorn.Config(app, host='127.0.0.1', port=0, lifespan='on'))\n"
        "import threading\n"
        "threading.Timer(20, lambda: setattr(server, 'should_exit', True)).start()\n"
        "server.run()\n"
    )
    (tmp_path / "serve.py").write_text(script)
    record_to = tmp_path / "records.txt"
    env = {**os.environ, "RECORD_TO": str(record_to)}
    proc = subprocess.Popen(
        [sys.executable, "serve.py"], cwd=tmp_path, env=env, text=True, stderr=subprocess.DEVNULL
    )
    try:
        lines = _wait_for_lines(record_to, 3, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert lines == ["[]", "['EphemeralStoreWarning']", "[]"]


def test_memory_store_warns_in_a_streamlit_app(tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    script = """
import warnings
import streamlit as st
import chatkeep
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    chatkeep.open_store("memory://").close()
st.write(",".join(type(w.message).__name__ for w in caught) or "none")
"""
    at = AppTest.from_string(script).run(timeout=30)
    assert [m.value for m in at.markdown] == ["EphemeralStoreWarning"]
