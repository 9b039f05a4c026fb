"""Helpers for the adapter tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import chatkeep


async def open_async(url: str) -> chatkeep.AsyncStore:
    """A real async store (close it in the test: ``async with await open_async(url) as s``)."""
    return await chatkeep.open_async_store(url)


def durable(url: str) -> str:
    """Skip on in-process stores: this test needs a second process to see the data."""
    if url.startswith("memory:"):
        pytest.skip("memory:// cannot be shared with another process")
    return url


def run_py(code: str, *args: str, timeout: float = 120) -> str:
    """Run ``code`` in a brand-new Python process; return its stdout (it must succeed)."""
    env = {**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"}
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout
