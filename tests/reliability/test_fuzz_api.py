"""Schemathesis against the HTTP API as an authenticated tenant, with another tenant's data
in the same store: no 5xx, every refusal in the one error shape, and the other tenant's
sessions byte-for-byte unchanged after every generated case.

(tests/server/test_schema.py runs schemathesis keyless; this run adds keys and tenants.)
Bounded: ``CHATKEEP_FUZZ_EXAMPLES`` / 10 per operation (6 by default); the number of cases run
is printed at the end and added to ``$CHATKEEP_FUZZ_REPORT`` when set.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

import chatkeep  # noqa: E402
from chatkeep import Message  # noqa: E402
from chatkeep.server import Settings, create_app  # noqa: E402
from chatkeep.server.keys import KeyFile  # noqa: E402

EXAMPLES = max(1, int(os.environ.get("CHATKEEP_FUZZ_EXAMPLES", "60")) // 10)
RAN: Counter[str] = Counter()

TMP = Path(tempfile.mkdtemp(prefix="chatkeep-fuzz-api-"))
URL = f"sqlite:///{TMP}/fuzz.db"
KEYS = KeyFile(TMP / "keys.json")
FUZZER_KEY, _ = KEYS.create("fuzzer")
VICTIM = "victim/'; DROP TABLE ck_sessions; --"
with chatkeep.open_store(URL, tenant=VICTIM) as _store:
    for _sid in ("plain", "{tag}*?", "../../etc/passwd", "a"):
        _store.append(_sid, [Message.user(f"victim secret {_sid}"), Message.assistant("ok")])
        _store.put_summary(_sid, "victim summary", 1)


def victim_view() -> Any:
    with chatkeep.open_store(URL, tenant=VICTIM) as store:
        return [
            (s.to_dict(), [m.to_dict() for m in store.read(s.session_id)],
             store.get_summary(s.session_id))
            for s in store.iter_sessions()
        ]  # fmt: skip


BEFORE = victim_view()
APP = create_app(Settings(store_url=URL, keys_file=str(TMP / "keys.json")))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("CHATKEEP_FUZZ_RANDOM") != "1",
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_fuzz_as_a_tenant_never_fails_or_leaks(case: Any) -> None:
    response = case.call(headers={"Authorization": f"Bearer {FUZZER_KEY}"})
    RAN[f"{case.method} {case.path}"] += 1
    assert response.status_code < 500, (response.status_code, response.text, case)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "request_id"} and error["message"]
    assert "victim secret" not in response.text


def test_zz_the_other_tenant_never_changed() -> None:
    if not RAN:
        pytest.skip("run together with test_fuzz_as_a_tenant_never_fails_or_leaks")
    assert victim_view() == BEFORE
    paths = APP.openapi()["paths"]
    operations = {f"{m.upper()} {p}" for p, ops in paths.items() for m in ops}
    assert operations <= set(RAN), operations - set(RAN)


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if RAN:
        total = sum(RAN.values())
        print(f"\nschemathesis (with keys): {total} cases over {len(RAN)} operations")
        target = os.environ.get("CHATKEEP_FUZZ_REPORT")
        if target:
            path = Path(target)
            old = json.loads(path.read_text()) if path.exists() else {}
            old["schemathesis with keys cases"] = old.get("schemathesis with keys cases", 0) + total
            path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(TMP, ignore_errors=True)
