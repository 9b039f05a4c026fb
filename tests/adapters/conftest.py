"""Fixtures for the adapter tests: real stores on every backend in conftest.BACKENDS."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import chatkeep

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")  # offline: no trace export


@pytest.fixture
def sync_store(url: str) -> Iterator[chatkeep.Store]:
    """A real sync store on this test's backend."""
    with chatkeep.open_store(url) as store:
        yield store
