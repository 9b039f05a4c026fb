"""Fixtures of the reliability tests: a printed seed, and targets on fresh storage."""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from tests.reliability.targets import Target, open_target


@pytest.fixture
def seed() -> int:
    """``$CHATKEEP_RELIABILITY_SEED`` or a random one; printed, so a failure can be replayed."""
    value = int(os.environ.get("CHATKEEP_RELIABILITY_SEED") or random.randrange(1 << 30))
    print(f"CHATKEEP_RELIABILITY_SEED={value}")
    return value


@pytest.fixture
def target(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str], AbstractContextManager[Target]]:
    """``target(name)``: a context manager giving that target on fresh storage."""

    def make(name: str) -> AbstractContextManager[Target]:
        cluster = request.getfixturevalue("redis_cluster_url") if name == "redis-cluster" else None
        return open_target(name, tmp_path / name, cluster_url=cluster)

    return make
