"""The peers' own virtual environment: created and kept in step with the pinned lock by the bench.

``ensure()`` builds ``bench/.peers-venv`` from ``bench/peers/requirements.lock`` (the peers,
pinned) and then installs chatkeep from this checkout without dependencies, so every contender
runs in one interpreter with exactly the recorded versions. A stamp (a hash of the lock and of
``pyproject.toml``) makes later runs skip the install. ``reexec()`` restarts the current bench
module inside that environment when it is not already running there.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOCK = Path(__file__).resolve().parent / "requirements.lock"
VENV = ROOT / "bench" / ".peers-venv"
PYTHON = VENV / "bin" / "python"
STAMP = VENV / ".chatkeep-bench-stamp"


def _fingerprint() -> str:
    h = hashlib.sha256()
    for path in (LOCK, ROOT / "pyproject.toml"):
        h.update(path.read_bytes())
    return h.hexdigest()


def _pip(*args: str) -> None:
    cmd = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", *args]
    print("peers venv:", " ".join(cmd[4:]), flush=True)
    subprocess.run(cmd, check=True)


def ensure() -> Path:
    """Create or update the peers' environment; return its python. Idempotent."""
    want = _fingerprint()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == want:
        return PYTHON
    print(
        "peers venv: installing the pinned peers (first use or a changed lock; a few "
        "minutes, not part of any measurement)",
        flush=True,
    )
    if not PYTHON.exists():
        print(f"peers venv: creating {VENV.relative_to(ROOT)}", flush=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    _pip("install", "--quiet", "--upgrade", "pip")
    _pip("install", "--quiet", "-r", str(LOCK))
    _pip("install", "--quiet", "--no-deps", "-e", str(ROOT))
    STAMP.write_text(want)
    return PYTHON


def inside() -> bool:
    return Path(sys.prefix).resolve() == VENV.resolve()


def reexec(module: str, argv: list[str]) -> None:
    """Run ``python -m module argv`` inside the peers' environment (replacing this process)."""
    if inside():
        return
    python = ensure()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    os.execve(str(python), [str(python), "-m", module, *argv], env)


if __name__ == "__main__":
    print(ensure())
