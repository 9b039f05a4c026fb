"""Hostile input against the library, on every backend x {sync, async}.

Every input is either refused with ``InvalidInput`` and a message saying what is wrong, with the
whole store (every seeded tenant through the API, and the backend's raw storage) unchanged; or
stored verbatim and read back exactly, with every other session unchanged. The rules are the
same on every backend (docs/stores.md, "What chatkeep accepts").
"""

from __future__ import annotations

import functools
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from tests.reliability.snapshots import SEED_IDS, TENANTS, Guard, logical, seed

from chatkeep import Message
from chatkeep.types import MAX_JSON_DEPTH

# Both twins where the async one is its own code (PostgreSQL, Redis); the in-process and SQLite
# async twins run the sync backend on threads (the conformance suite covers them). redis-cluster
# is the redis code with a cluster client; its key layout is tested in tests/test_redis_backend.py
COMBOS = [
    ("memory", "sync"),
    ("sqlite", "sync"),
    ("file", "sync"),
    ("postgres", "sync"),
    ("postgres", "async"),
    ("redis", "sync"),
    ("redis", "async"),
]


@pytest.fixture(params=COMBOS, ids=["-".join(c) for c in COMBOS])
def combo(request: pytest.FixtureRequest) -> tuple[str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def backend(combo: tuple[str, str]) -> str:
    return combo[0]


@pytest.fixture
def flavour(combo: tuple[str, str]) -> str:
    return combo[1]


def nested(depth: int, leaf: Any = 1) -> Any:
    """``depth`` levels of JSON objects (and arrays, alternating) around ``leaf``."""
    return functools.reduce(lambda acc, i: {"k": acc} if i % 2 else [acc], range(depth), leaf)


def call(call_id: str, arguments: str = "{}") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": "f", "arguments": arguments}}


#: (what, action, part of the message) — each must be refused and change nothing
REFUSED: list[tuple[str, Any, str]] = [
    ("unknown role", lambda s: s.append("x", {"role": "robot", "content": "hi"}), "unknown role"),
    ("role in capitals", lambda s: s.append("x", {"role": "USER", "content": "hi"}), "role"),
    ("no role", lambda s: s.append("x", {"content": "hi"}), "role"),
    (
        "tool without its call id",
        lambda s: s.append("x", {"role": "tool", "content": "42"}),
        "tool",
    ),
    (
        "tool call id on a user message",
        lambda s: s.append("x", {"role": "user", "content": "a", "tool_call_id": "c"}),
        "tool_call_id",
    ),
    (
        "tool calls on a user message",
        lambda s: s.append("x", {"role": "user", "content": "a", "tool_calls": [call("c")]}),
        "tool_calls",
    ),
    ("content a number", lambda s: s.append("x", {"role": "user", "content": 42}), "content"),
    ("content part without type", lambda s: s.append("x", Message.user([{"text": "a"}])), "type"),
    ("metadata a list", lambda s: s.append("x", Message.user("a", metadata=[1])), "metadata"),
    ("metadata int key", lambda s: s.append("x", Message.user("a", metadata={1: 2})), "keys"),
    ("NaN", lambda s: s.append("x", Message.user("a", metadata={"n": float("nan")})), "JSON"),
    ("Infinity", lambda s: s.append("x", Message.user("a", metadata={"n": float("inf")})), "JSON"),
    ("5000-digit int", lambda s: s.append("x", Message.user("a", metadata={"n": 10**5000})), ""),
    ("lone surrogate in content", lambda s: s.append("x", Message.user("a\ud800")), "surrogate"),
    (
        "lone surrogate in a metadata key",
        lambda s: s.append("x", Message.user("a", metadata={"\udfff": 1})),
        "metadata",
    ),
    (
        "lone surrogate in a content part",
        lambda s: s.append("x", Message.user([{"type": "text", "text": "\ud800"}])),
        "content",
    ),
    ("lone surrogate in name", lambda s: s.append("x", Message.user("a", name="\ud800")), "name"),
    (
        "lone surrogate in tool_call_id",
        lambda s: s.append("x", Message.tool("a", tool_call_id="\ud800")),
        "tool_call_id",
    ),
    (
        "metadata 10,000 levels deep",
        lambda s: s.append("x", Message.user("a", metadata={"d": nested(10_000)})),
        "nested",
    ),
    (
        "tool call arguments 10,000 levels deep",
        lambda s: s.append(
            "x", Message.assistant(tool_calls=[{**call("c"), "extra": nested(10_000)}])
        ),
        "nested",
    ),
    (
        "metadata one level too deep",
        lambda s: s.append("x", Message.user("a", metadata={"d": nested(MAX_JSON_DEPTH)})),
        f"more than {MAX_JSON_DEPTH}",
    ),
    (
        "naive created_at",
        lambda s: s.append("x", Message.user("a", created_at=datetime(2024, 1, 1))),
        "timezone",
    ),
    ("over max_message_bytes", lambda s: s.append("x", Message.user("z" * 1_000_001)), "limit"),
    ("empty batch", lambda s: s.append("x", []), "at least one"),
    ("batch over the limit", lambda s: s.append("x", [Message.user("a")] * 1001), "limit"),
    (
        "one bad message in a batch stores none",
        lambda s: s.append("plain", [Message.user("fine"), {"role": "robot"}]),
        "unknown role",
    ),
    ("text instead of messages", lambda s: s.append("x", "hello"), "got text"),
    ("session id empty", lambda s: s.append("", Message.user("a")), "empty"),
    ("session id blank", lambda s: s.append(" \t", Message.user("a")), "blank"),
    ("session id with newline", lambda s: s.append("a\nb", Message.user("a")), "control"),
    ("session id with NUL", lambda s: s.append("a\x00b", Message.user("a")), "control"),
    ("session id with DEL", lambda s: s.append("a\x7f", Message.user("a")), "control"),
    ("session id lone surrogate", lambda s: s.append("\ud800", Message.user("a")), "surrogate"),
    ("session id 257 chars", lambda s: s.append("x" * 257, Message.user("a")), "limit is 256"),
    ("session id not text", lambda s: s.append(42, Message.user("a")), "string"),
    ("read with NUL id", lambda s: s.read("a\x00"), "control"),
    ("delete with newline id", lambda s: s.delete("plain\n"), "control"),
    ("clear with surrogate id", lambda s: s.clear("\udc80"), "surrogate"),
    ("window with bad id", lambda s: s.window("\x00", 100), "control"),
    ("tenant with NUL", lambda s: s.with_tenant("acme\x00").append("x", Message.user("a")), ""),
    ("tenant with newline", lambda s: s.with_tenant("acme\n").read("plain"), "control"),
    ("tenant 65 chars", lambda s: s.with_tenant("t" * 65).read("plain"), "limit is 64"),
    ("erase a bad tenant", lambda s: s.erase("acme\x00"), "control"),
    (
        "idempotency key with NUL",
        lambda s: s.append("x", Message.user("a"), idempotency_key="\x00"),
        "",
    ),
    ("prefix with NUL", lambda s: s.sessions(prefix="a\x00"), "control"),
    ("prefix lone surrogate", lambda s: s.sessions(prefix="\ud800"), "surrogate"),
    ("forged cursor (NUL id)", lambda s: s.sessions(cursor="AA"), "cursor"),
    ("forged cursor (not base64)", lambda s: s.sessions(cursor="%%%"), "cursor"),
    ("forged cursor (bad UTF-8)", lambda s: s.sessions(cursor="_w"), "cursor"),
    ("summary with NUL", lambda s: s.put_summary("plain", "a\x00b", 1), "NUL"),
    ("summary lone surrogate", lambda s: s.put_summary("plain", "\ud800", 1), "surrogate"),
    ("summary beyond the last seq", lambda s: s.put_summary("plain", "x", 99), ""),
    ("session metadata too deep", lambda s: s.update_session("plain", metadata=nested(500)), ""),
    ("lease owner with NUL", lambda s: s.acquire_lease("plain", owner="w\x00", ttl=5), "owner"),
    ("lease owner surrogate", lambda s: s.acquire_lease("plain", owner="\ud800", ttl=5), "owner"),
    ("lease ttl NaN", lambda s: s.acquire_lease("plain", owner="w", ttl=float("nan")), "ttl"),
    ("negative after_seq", lambda s: s.read("plain", after_seq=-1), "after_seq"),
    ("after_seq over 64 bits", lambda s: s.read("plain", after_seq=2**70), "2**63-1"),
    ("limit over 64 bits", lambda s: s.read("plain", limit=2**70), "2**63-1"),
    ("limit True", lambda s: s.read("plain", limit=True), "limit"),
    ("window budget over 64 bits", lambda s: s.window("plain", 2**64), "2**63-1"),
    ("window reserve over 64 bits", lambda s: s.window("plain", 9, reserve=2**64), "2**63-1"),
    (
        "expect_last_seq over 64 bits",
        lambda s: s.append("plain", Message.user("a"), expect_last_seq=2**64),
        "2**63-1",
    ),
    ("sessions limit over 64 bits", lambda s: s.sessions(limit=2**64), "2**63-1"),
    ("lease token over 64 bits", lambda s: s.release_lease("plain", 2**64), "2**63-1"),
    ("lease token not an int", lambda s: s.release_lease("plain", "1"), "lease token"),
    ("summary covers True", lambda s: s.put_summary("plain", "x", True), "covers"),
    ("erase the empty tenant", lambda s: s.erase(""), "empty"),
    ("window budget negative", lambda s: s.window("plain", -5), "token_budget"),
]


def test_hostile_input_is_refused_and_changes_nothing(store: Any, url: str) -> None:
    seed(store)
    guard = Guard(store, url)
    for what, action, match in REFUSED:
        try:
            guard.refused(action, match)
        except AssertionError as exc:
            raise AssertionError(f"{what}: {exc}") from exc
    guard.unchanged()
    assert len(guard.refusals) == len(REFUSED)


#: session ids and tenants with SQL, Lua, glob, hash-tag and path metacharacters: all valid
HOSTILE_IDS = (
    "'; DROP TABLE ck_messages; --",
    "\"; DELETE FROM ck_sessions WHERE ''='",
    "]]) redis.call('FLUSHALL') --[[",
    "../../etc/passwd",
    "..",
    ".",
    "/",
    "//",
    "%2F",
    "%00",
    "%",
    "{tag}",
    "}{",
    "{",
    "*",
    "?",
    "[a-z]*",
    "\\",
    "a:b:c",
    "default:plain",  # looks like another tenant's key
    " spaced ",
    "emoji 🦜🔥",
    "\u202eRTL override",
    "zero\u200bwidth",
    "Ω" * 256,
    "é",  # NFC
    unicodedata.normalize("NFD", "é"),  # a different id: ids are compared as code points
    "A",
    "a",
)
HOSTILE_TENANTS = (
    "'; DROP SCHEMA public CASCADE; --",
    "*",
    "{tag}",
    "../..",
    "ténant/ä",
    "a?b",
)


def test_hostile_ids_and_tenants_are_stored_verbatim_and_separately(
    store: Any, url: str, tmp_path: Path
) -> None:
    around = sorted(p.name for p in tmp_path.parent.iterdir())
    seed(store)
    before = logical(store)
    for tenant in HOSTILE_TENANTS:
        view = store.with_tenant(tenant)
        for i, sid in enumerate(HOSTILE_IDS):
            view.append(sid, Message.user(f"{tenant!r} {sid!r}", metadata={"i": i}))
    assert len({*HOSTILE_IDS}) == len(HOSTILE_IDS)
    for tenant in HOSTILE_TENANTS:
        view = store.with_tenant(tenant)
        listed = [s.session_id for s in view.iter_sessions(page_size=7)]
        assert sorted(listed) == sorted(HOSTILE_IDS)  # every id, each once, none from others
        for i, sid in enumerate(HOSTILE_IDS):
            [m] = view.read(sid)
            assert (m.text, m.metadata, m.session_id) == (f"{tenant!r} {sid!r}", {"i": i}, sid)
        # glob and LIKE characters in a prefix match literally
        for prefix in ("*", "?", "[a-z]", "%", "{", ".."):
            got = {s.session_id for s in view.iter_sessions(prefix=prefix)}
            assert got == {s for s in HOSTILE_IDS if s.startswith(prefix)}, prefix
    assert logical(store) == before  # the seeded tenants never saw any of it
    # path-like ids and tenants never reach outside the store's own folder
    assert sorted(p.name for p in tmp_path.parent.iterdir()) == around
    if url.startswith("file://"):
        root = Path(url[len("file://") :]).resolve()
        files = [p.resolve() for p in tmp_path.rglob("*")]
        assert files and all(p == root or root in p.parents for p in files), files[:5]
    # erasing a tenant named like a glob pattern removes exactly that tenant
    assert store.erase("*") == len(HOSTILE_IDS)
    assert store.with_tenant("*").sessions().items == ()
    assert logical(store) == before
    for tenant in HOSTILE_TENANTS[2:]:
        assert len(list(store.with_tenant(tenant).iter_sessions())) == len(HOSTILE_IDS)
    # deleting an id that looks like a path or a pattern deletes that session only
    acme = store.with_tenant(HOSTILE_TENANTS[2])
    assert acme.delete("../../etc/passwd") and acme.delete("*")
    rest = {s.session_id for s in acme.iter_sessions()}
    assert rest == set(HOSTILE_IDS) - {"../../etc/passwd", "*"}


def _verbatim_messages() -> list[Message]:
    deepest = nested(MAX_JSON_DEPTH - 1, "leaf")  # the deepest metadata value accepted
    return [
        Message.system("NUL \x00 inside, CRLF \r\n, tab \t, bell \x07, US \x1f, RS \x1e"),
        Message.user("'; DROP TABLE ck_messages; -- ]] redis.call('DEL', KEYS[1]) --[["),
        Message.user("astral 𝄞🦜, BOM \ufeff, U+FFFF \uffff, max \U0010ffff, replacement \ufffd"),
        Message.user(
            [{"type": "text", "text": "part \x00"}, {"type": "image_url", "url": "../../x"}],
            name="name with NUL \x00 and {tag}",
        ),
        Message.assistant(
            "",
            tool_calls=[call("call \x00 *?", '{"sql": "\'; DROP TABLE x; --", "n": 1e308}')],
        ),
        Message.tool("result", tool_call_id="call \x00 *?"),
        Message.tool("orphan result: no call has this id", tool_call_id="nobody-called-me"),
        Message.user(
            "numbers",
            metadata={
                "big": 10**300,
                "neg": -(10**300),
                "tiny": 5e-324,
                "max": 1.7976931348623157e308,
                "negzero": -0.0,
                "keys with NUL \x00": {"$where": "1", "..": None, "": [True, False]},
                "deep": deepest,
            },
        ),
        Message("developer", "developer role"),
    ]


def test_odd_but_valid_messages_round_trip_exactly(store: Any, url: str) -> None:
    seed(store)
    before = logical(store)
    messages = _verbatim_messages()
    result = store.append("verbatim", messages)
    read = store.read("verbatim")
    assert [m.message() for m in read] == messages
    assert [m.message() for m in result.messages] == messages
    assert [m.seq for m in read] == list(range(1, len(messages) + 1))
    # the -0.0 keeps its sign (== would not tell)
    assert str(read[7].metadata["negzero"]) == "-0.0"
    after = logical(store)
    del after["default"]["verbatim"]
    assert after == before
    # a store opened afresh (a new connection or file handle) reads the same bytes back
    assert [m.message() for m in store.read("verbatim", after_seq=0)] == messages


def test_seed_ids_cover_the_metacharacters() -> None:
    """The snapshot's seeded ids really contain what the hostile tests claim."""
    joined = "".join(SEED_IDS)
    for ch in "{}*?[]/.%":
        assert ch in joined, ch
    assert any("DROP" in t for t in TENANTS)
