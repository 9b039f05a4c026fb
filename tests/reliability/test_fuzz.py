"""Property-based fuzzing of the library with Hypothesis, against SQLite, PostgreSQL and Redis.

Each example appends a random batch (roles, content, names, tool calls, metadata with any
Unicode including NUL and lone surrogates, huge and non-finite numbers, deep nesting) to a
random session id of a random tenant. The property: the append is refused with
``InvalidInput`` and the session is unchanged, or it is stored and reads back exactly; and a
model of every accepted append matches the whole store at the end (so no other session, in any
tenant, ever changed). Messages that are valid by construction must be accepted.

Bounded for CI: ``CHATKEEP_FUZZ_EXAMPLES`` (default 60) examples per backend; ``make soak``
sets a larger number. The count of examples actually run is printed at the end of the module,
and written as JSON to ``$CHATKEEP_FUZZ_REPORT`` when that is set.
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chatkeep
from chatkeep import Message
from chatkeep.errors import InvalidInput
from chatkeep.types import MAX_JSON_DEPTH

EXAMPLES = int(os.environ.get("CHATKEEP_FUZZ_EXAMPLES", "60"))
RAN: Counter[str] = Counter()

NASTY = [
    "\x00", "\ud800", "\udfff", "\n", "\r", "\x7f", "\x1f", "\x85", "{", "}", "*", "?", "[",
    "/", "%", "'", '"', "\\", "-", ";", "\ufeff", "\u202e", "\U0010ffff", "🦜", "é",
]  # fmt: skip
text = st.text(alphabet=st.one_of(st.characters(exclude_categories=()), st.sampled_from(NASTY)))
clean = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40)
ids = st.one_of(
    st.sampled_from(["plain", "{tag}", "*", "../../etc", "'; DROP TABLE ck_messages; --"]),
    st.text(alphabet=st.one_of(st.characters(), st.sampled_from(NASTY)), max_size=300),
)
TENANTS = ["default", "acme", "{t}*?", "'; DROP TABLE ck_sessions; --"]
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=10**280, max_value=10**320),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, text)
json_values = st.recursive(
    scalars,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(text, kids, max_size=3),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    return functools.reduce(lambda acc, _: {"k": acc}, range(depth - 1), {})


json_objects = st.one_of(
    st.dictionaries(text, json_values, max_size=4),
    st.integers(MAX_JSON_DEPTH - 2, MAX_JSON_DEPTH + 2).map(nested),  # around the limit
)
times = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(timezone.utc)
)


@st.composite
def any_message(draw: st.DrawFn) -> dict[str, Any]:
    """Anything shaped roughly like a message: often invalid."""
    msg: dict[str, Any] = {
        "role": draw(
            st.sampled_from(
                ["system", "developer", "user", "assistant", "tool"] * 3
                + ["robot", "USER", "", "function"]
            )
        ),
        "content": draw(
            st.one_of(
                text,
                st.lists(st.dictionaries(text, json_values, max_size=3), max_size=2),
                st.none(),
                st.integers(),
            )
        ),
        "created_at": draw(times),
    }
    for field, strategy in (
        ("name", st.one_of(text, st.none())),
        ("tool_call_id", text),
        ("tool_calls", st.lists(st.dictionaries(text, json_values, max_size=3), max_size=2)),
        ("metadata", json_objects),
    ):
        if draw(st.booleans()):
            msg[field] = draw(strategy)
    return msg


@st.composite
def valid_message(draw: st.DrawFn) -> dict[str, Any]:
    """A message that chatkeep must accept: every role's rules kept, any printable text."""
    role = draw(st.sampled_from(["system", "developer", "user", "assistant", "tool"]))
    meta = draw(
        st.dictionaries(
            clean,
            st.recursive(
                st.none()
                | st.booleans()
                | st.integers(-(10**300), 10**300)
                | st.floats(allow_nan=False, allow_infinity=False)
                | clean,
                lambda kids: st.lists(kids, max_size=3) | st.dictionaries(clean, kids, max_size=3),
                max_leaves=8,
            ),
            max_size=3,
        )
    )
    msg: dict[str, Any] = {"role": role, "content": draw(clean), "created_at": draw(times)}
    if meta:
        msg["metadata"] = meta
    if role == "tool":
        msg["tool_call_id"] = draw(clean.filter(bool))
    if role == "assistant" and draw(st.booleans()):
        msg["tool_calls"] = [
            {"id": draw(clean), "type": "function",
             "function": {"name": draw(clean), "arguments": draw(clean)}}
        ]  # fmt: skip
    return msg


batches = st.one_of(
    st.tuples(st.just(True), st.lists(valid_message(), min_size=1, max_size=4)),
    st.tuples(st.just(False), st.lists(any_message(), min_size=0, max_size=4)),
)

BACKENDS = ("sqlite", "postgres", "redis")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def fuzz_store(url: str) -> Iterator[Any]:
    with chatkeep.open_store(url, purge_interval=3600) as store:
        yield store


def _as_messages(batch: list[dict[str, Any]]) -> list[Message]:
    return [Message.from_dict(m) for m in batch]


def test_appends_round_trip_exactly_or_change_nothing(fuzz_store: Any, backend: str) -> None:
    store = fuzz_store
    model: dict[tuple[str, str], list[Message]] = {}
    tally: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=os.environ.get("CHATKEEP_FUZZ_RANDOM") != "1",
        database=None,
    )
    @given(tenant=st.sampled_from(TENANTS), sid=ids, batch=batches)
    def run(tenant: str, sid: str, batch: tuple[bool, list[dict[str, Any]]]) -> None:
        must_accept, messages = batch
        view = store.with_tenant(tenant)
        try:
            before = view.read(sid)
        except InvalidInput:
            before = None  # a bad id: the append must be refused too
        try:
            result = view.append(sid, messages)
        except InvalidInput as exc:
            assert str(exc)
            assert not must_accept or before is None, (exc, messages)
            if before is not None:
                assert view.read(sid) == before
            tally["refused"] += 1
            return
        assert before is not None
        expected = _as_messages(messages)
        got = view.read(sid, after_seq=len(before))
        assert [m.message() for m in got] == expected
        assert [m.seq for m in got] == list(range(len(before) + 1, len(before) + 1 + len(got)))
        assert result.first_seq == len(before) + 1 and result.last_seq == len(before) + len(got)
        model.setdefault((tenant, sid), list(m.message() for m in before)).extend(expected)
        tally["accepted"] += 1

    run()
    # the whole store is exactly the model: no accepted append touched another session
    for tenant in TENANTS:
        view = store.with_tenant(tenant)
        listed = sorted(s.session_id for s in view.iter_sessions())
        assert listed == sorted(sid for t, sid in model if t == tenant)
        for (t, sid), messages in model.items():
            if t == tenant:
                stored = view.read(sid)
                assert [m.message() for m in stored] == messages
                assert [m.seq for m in stored] == list(range(1, len(messages) + 1))
                assert view.info(sid).message_count == len(messages)
    RAN[f"hypothesis {backend} examples"] += sum(tally.values())
    RAN[f"hypothesis {backend} accepted"] += tally["accepted"]
    RAN[f"hypothesis {backend} refused"] += tally["refused"]
    assert tally["accepted"] > 0 and tally["refused"] > 0, tally  # both paths really ran


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    if not RAN:
        return
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(RAN.items())))
    target = os.environ.get("CHATKEEP_FUZZ_REPORT")
    if target:
        path = Path(target)
        old = json.loads(path.read_text()) if path.exists() else {}
        old.update(RAN)
        path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
