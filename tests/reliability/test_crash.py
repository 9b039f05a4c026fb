"""Writers SIGKILLed at random moments on every backend lose nothing they acknowledged.

The machinery is in crash.py (rounds, kills, checks) and ledger.py (the invariants); `make
soak` runs the same code with 200+ kills. Half the rounds run the async writer (AsyncStore,
AsyncMemory), the rest the sync one, against the same ledger. Here: about 30 kills in all,
and a test that the checkers do catch a lost, duplicated, cut or interleaved write (a check
that cannot fail proves nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from tests.reliability.crash import async_round, run_crash
from tests.reliability.ledger import CrashLedger, batch, parse_rows
from tests.reliability.targets import KILL_TARGETS, Target

import chatkeep
from chatkeep import Message

pytestmark = pytest.mark.slow

#: kills per target in CI (about 30 in all, at least 2 of them of the async writer: see
#: crash.async_round); `make soak` does 200+
CI_KILLS = {
    "sqlite-full": 3,
    "sqlite-normal": 3,
    "sqlite-extra": 3,
    "sqlite-off": 3,
    "file": 4,
    "postgres": 3,
    "redis": 3,
    "redis-aof": 4,
    "redis-cluster": 3,
}


def test_every_kill_target_has_a_ci_share() -> None:
    assert set(CI_KILLS) == set(KILL_TARGETS)
    for kills in CI_KILLS.values():  # both flavours of writer are killed on every backend
        flavours = [async_round(n) for n in range(kills)]
        assert flavours.count(True) >= 2 and flavours.count(False) >= 1


@pytest.mark.parametrize("name", KILL_TARGETS)
def test_sigkilled_writers_lose_and_duplicate_nothing(
    name: str,
    seed: int,
    target: Callable[[str], AbstractContextManager[Target]],
    tmp_path: Path,
) -> None:
    kills = CI_KILLS[name]
    with target(name) as t:
        figures = run_crash(t, kills, seed, tmp_path / "work")
    replay = f"replay with CHATKEEP_RELIABILITY_SEED={seed}: {figures}"
    assert figures["problems"] == [], replay
    assert figures["kills"] == kills and figures["reads_after_kill"] == kills, replay
    assert figures["lost"] == 0 and figures["duplicated"] == 0, replay
    assert figures["acked"] > 0, replay  # the writers really wrote
    assert figures["async_kills"] == sum(async_round(n) for n in range(kills)), replay
    if figures["async_kills"] > figures["async_early_kills"]:  # it waited for an ack
        assert figures["async_acked"] > 0, replay
    if name.startswith("sqlite"):
        assert figures["integrity_checks"] == kills, replay
    if name == "redis-aof":
        assert figures["server_kills"] == kills // 2, replay


def stored(store: chatkeep.Store, sid: str) -> list[chatkeep.StoredMessage]:
    return store.read(sid)


def test_the_checks_catch_loss_duplication_cuts_and_interleaving() -> None:
    with chatkeep.open_store("memory://") as store:
        store.append("log-0", batch("a", 2), idempotency_key="a")
        store.append("log-0", batch("b", 3), idempotency_key="b")
        assert parse_rows("log-0", stored(store, "log-0")).problems == []

        store.append("log-0", batch("b", 3))  # the same write again, without its key
        parsed = parse_rows("log-0", stored(store, "log-0"))
        assert parsed.duplicated == 1 and "stored twice" in parsed.problems[0]

        store.append("cut", batch("c", 3)[:2])  # a batch that lost its last message
        assert "cut" in parse_rows("cut", stored(store, "cut")).problems[0]

        first, second = batch("d", 2), batch("e", 2)
        store.append("mixed", [first[0], second[0], first[1], second[1]])
        assert "not contiguous" in parse_rows("mixed", stored(store, "mixed")).problems[0]

        question = Message.user("t/0", metadata={"k": "t", "j": 0, "n": 2, "big": 0})
        store.append("turn", [Message.user("x/0", metadata={"k": "x", "j": 0, "n": 1})])
        answer = Message.assistant("t/1", metadata={"k": "t", "j": 1, "n": 2, "after": 0})
        store.append("turn", [question, answer])  # it saw seq 0, but seq 1 slipped in
        assert "saw seq 0" in parse_rows("turn", stored(store, "turn")).problems[0]

        store.append("content", [Message.user("f/0 changed", metadata={"k": "f", "j": 0, "n": 1})])
        assert "content" in parse_rows("content", stored(store, "content")).problems[0]

        ledger = CrashLedger()  # an acknowledged append that is gone is counted as lost
        ledger.absorb(
            [
                {"t": "do", "op": "append", "sid": "log-0", "k": "a", "n": 2, "big": 0},
                {
                    "t": "ok",
                    "op": "append",
                    "sid": "log-0",
                    "k": "a",
                    "first": 1,
                    "last": 2,
                    "rep": False,
                },
            ]
        )
        store.clear("log-0")
        ledger.check(store)
        assert ledger.stats["lost"] == 1 and any("was lost" in p for p in ledger.problems)


def test_a_replace_is_old_or_new_including_never_having_happened() -> None:
    with chatkeep.open_store("memory://") as store:
        ledger = CrashLedger()  # killed during the first replace: absent is the old state
        ledger.absorb([{"t": "do", "op": "replace", "sid": "rep-0", "g": "g1", "n": 2}])
        ledger.check(store)
        assert ledger.problems == []
        ledger.absorb(
            [
                {"t": "do", "op": "replace", "sid": "rep-0", "g": "g2", "n": 2},
                {"t": "ok", "op": "replace", "sid": "rep-0", "g": "g2"},
            ]
        )
        ledger.check(store)  # acknowledged, yet the session is empty: lost
        assert ledger.stats["lost"] == 1 and "holds None" in ledger.problems[0]
