"""Schemathesis against the OpenAPI schema, in-process (ASGI): no 5xx on generated input.

Bounded: 25 examples per operation, derandomized (the same cases every run). Each case's
status is recorded, and the module checks at the end that cases really ran on every operation.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from chatkeep.server import Settings, create_app  # noqa: E402

RAN: Counter[str] = Counter()


TMP = Path(tempfile.mkdtemp(prefix="chatkeep-schema-"))
APP = create_app(Settings(store_url=f"sqlite:///{TMP}/schema.db", keys_file=str(TMP / "k.json")))
# schemathesis runs the app's lifespan itself (the store opens once, for the whole module)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case: Any) -> None:
    response = case.call()
    RAN[f"{case.method} {case.path}"] += 1
    assert response.status_code < 500, (response.status_code, response.text, case)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "request_id"}


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if RAN:
        print(f"\nschemathesis: {sum(RAN.values())} cases over {len(RAN)} operations")
    shutil.rmtree(TMP, ignore_errors=True)


def test_zz_cases_ran_on_every_operation() -> None:
    if not RAN:
        pytest.skip("run together with test_no_server_errors")
    paths = APP.openapi()["paths"]
    operations = {f"{m.upper()} {p}" for p, ops in paths.items() for m in ops}
    # every documented operation got cases (schemathesis also tries undocumented methods)
    assert operations <= set(RAN), operations - set(RAN)
    with_input = {
        f"{m.upper()} {p}"
        for p, ops in paths.items()
        for m, op in ops.items()
        if op.get("parameters") or op.get("requestBody")
    }
    assert len(with_input) >= 8
    assert all(RAN[op] >= 20 for op in with_input), RAN  # operations without input: a few
