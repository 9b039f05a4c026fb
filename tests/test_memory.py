"""Memory / AsyncMemory: cheap views, turns under a lease, on every backend."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

import chatkeep
from chatkeep import (
    AsyncMemory,
    ConflictError,
    LeaseBusy,
    LeaseTimeout,
    Memory,
    Message,
    Store,
)


@pytest.fixture
def sync_store(url: str) -> Iterator[Store]:
    with chatkeep.open_store(url) as store:
        yield store


def test_memory_objects_hold_no_state(sync_store: Store) -> None:
    Memory("u", store=sync_store).add("user", "My name is Ada.")
    Memory("u", store=sync_store).add(Message.assistant("Hello Ada."))
    fresh = Memory("u", store=sync_store, system_prompt="Be brief.")
    assert fresh.messages() == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": "Hello Ada."},
    ]
    assert [m.seq for m in fresh.history()] == [1, 2]
    assert fresh.clear() == 2 and fresh.history() == []


def test_system_prompt_is_reserved_in_the_window(sync_store: Store) -> None:
    mem = Memory("u", store=sync_store, token_limit=60, system_prompt="word " * 40)
    for i in range(6):
        mem.add("user", f"question {i} " + "x " * 10)
    w = mem.window()
    reserve = w.tokens - sum(m.tokens for m in w.messages)
    assert (reserve > 0 and w.tokens <= 60) or w.over_budget
    assert len(w.messages) < 6


def test_turn_appends_user_and_reply_atomically(sync_store: Store) -> None:
    mem = Memory("u", store=sync_store)
    with mem.turn("What is 2+2?") as t:
        assert t.messages[-1] == {"role": "user", "content": "What is 2+2?"}
        t.reply("4")
    assert t.result is not None and (t.result.first_seq, t.result.last_seq) == (1, 2)
    with pytest.raises(RuntimeError), mem.turn("this one fails") as t2:
        t2.reply("never stored")
        raise RuntimeError("LLM exploded")
    assert [m.text for m in mem.history()] == ["What is 2+2?", "4"]
    # the failed turn released its lease
    assert sync_store.acquire_lease("u", owner="x", ttl=1) is not None


def test_concurrent_turns_queue_and_never_interleave(sync_store: Store) -> None:
    errors: list[BaseException] = []

    def one_turn(n: int) -> None:
        try:
            mem = Memory("shared", store=sync_store, lease_timeout=30)
            with mem.turn(f"q{n}") as t:
                time.sleep(0.02)  # the "LLM call"
                t.reply(f"a{n}")
        except BaseException as exc:  # pragma: no cover - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=one_turn, args=(n,)) for n in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    texts = [m.text for m in sync_store.read("shared")]
    assert len(texts) == 12
    for i in range(0, 12, 2):  # every question is directly followed by its own answer
        assert texts[i].startswith("q") and texts[i + 1] == "a" + texts[i][1:]


def test_reject_policy_fails_fast(sync_store: Store) -> None:
    holder = sync_store.acquire_lease("s", owner="other", ttl=30)
    assert holder is not None
    with pytest.raises(LeaseBusy):
        Memory("s", store=sync_store, lease_policy="reject").turn("hi").__enter__()
    with pytest.raises(LeaseTimeout):
        Memory("s", store=sync_store, lease_timeout=0.2).turn("hi").__enter__()
    assert sync_store.read("s") == []


def test_expired_lease_cannot_interleave(sync_store: Store) -> None:
    mem = Memory("s", store=sync_store, lease_ttl=0.1)
    with pytest.raises(ConflictError), mem.turn("slow question") as t:
        time.sleep(0.2)  # our lease expired; someone else takes a turn
        with Memory("s", store=sync_store).turn("fast question") as other:
            other.reply("fast answer")
        t.reply("slow answer")
    assert [m.text for m in sync_store.read("s")] == ["fast question", "fast answer"]


def test_async_memory_turns(url: str) -> None:
    async def main() -> list[str]:
        async with await chatkeep.open_async_store(url) as store:

            async def one(n: int) -> None:
                mem = AsyncMemory("a", store=store)
                async with mem.turn(f"q{n}") as t:
                    await asyncio.sleep(0.01)
                    t.reply(f"a{n}")

            await asyncio.gather(*(one(n) for n in range(5)))
            mem = AsyncMemory("a", store=store, system_prompt="sys")
            assert (await mem.messages())[0] == {"role": "system", "content": "sys"}
            return [m.text for m in await mem.history()]

    texts = asyncio.run(main())
    assert len(texts) == 10
    for i in range(0, 10, 2):
        assert texts[i + 1] == "a" + texts[i][1:]


def test_default_store_follows_env(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import chatkeep.memory as memory_mod

    monkeypatch.setenv("CHATKEEP_URL", f"sqlite:///{tmp_path}/env.db")
    monkeypatch.setattr(memory_mod, "_default_store", None)
    mem = Memory("u")
    mem.add("user", "hi")
    assert mem.store.url.endswith("env.db")
    mem.store.close()


def test_an_agent_turn_with_tool_calls(sync_store: Store) -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}
    mem = Memory("agent", store=sync_store)
    with mem.turn("Weather in Oslo?") as t:
        t.add(Message.assistant("", tool_calls=[call]))
        t.add({"role": "tool", "content": "3 C", "tool_call_id": "c1"})
        t.reply("It is 3 C in Oslo.")
    assert [m.role for m in mem.history()] == ["user", "assistant", "tool", "assistant"]
    assert mem.history()[1].tool_calls == [call]
    with mem.turn() as t2:  # a turn without a new user message (e.g. a follow-up tool loop)
        assert t2.messages[-1]["content"] == "It is 3 C in Oslo."
    assert len(mem.history()) == 4  # nothing added, nothing written


@pytest.mark.parametrize(
    "kwargs",
    [
        {"token_limit": 0},
        {"token_limit": "big"},
        {"lease_policy": "drop"},
        {"system_prompt": "bad \ud800"},
    ],
)
def test_memory_settings_are_checked(sync_store: Store, kwargs: dict[str, object]) -> None:
    with pytest.raises(chatkeep.InvalidInput):
        Memory("u", store=sync_store, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(chatkeep.InvalidSessionId):
        Memory("", store=sync_store)


def test_a_turn_with_an_idempotency_key_is_stored_once(sync_store: Store) -> None:
    mem = Memory("idem", store=sync_store)
    with mem.turn("book it", idempotency_key="turn-1") as t:
        t.reply("booked")
    assert t.result is not None and not t.result.replayed
    with mem.turn("book it", idempotency_key="turn-1") as again:
        again.reply("booked twice?")
    assert again.result is not None and again.result.replayed
    assert [m.text for m in again.result.messages] == ["book it", "booked"]
    assert [m.text for m in mem.history()] == ["book it", "booked"]
    with pytest.raises(chatkeep.InvalidInput):
        mem.turn("x", idempotency_key="bad\nkey")


def test_a_turn_says_how_long_it_waited_for_the_lease(sync_store: Store) -> None:
    with Memory("w", store=sync_store).turn("free") as t:
        t.reply("ok")
    free = t.lease_wait_seconds
    holder = sync_store.acquire_lease("w", owner="other", ttl=30)
    assert holder is not None
    releaser = threading.Timer(0.3, sync_store.release_lease, ("w", holder.token))
    releaser.start()
    with Memory("w", store=sync_store, lease_timeout=30).turn("queued") as t2:
        t2.reply("ok")
    releaser.join()
    assert free >= 0 and t2.lease_wait_seconds >= 0.25  # the holder kept it 0.3 s


def test_async_turn_idempotency_and_lease_wait(url: str) -> None:
    async def main() -> None:
        async with await chatkeep.open_async_store(url) as store:
            mem = AsyncMemory("ai", store=store)
            async with mem.turn("q", idempotency_key="k") as t:
                t.reply("a")
            async with mem.turn("q", idempotency_key="k") as again:
                again.reply("b")
            assert t.result is not None and not t.result.replayed
            assert again.result is not None and again.result.replayed
            assert [m.text for m in await mem.history()] == ["q", "a"]
            holder = await store.acquire_lease("ai", owner="other", ttl=30)
            assert holder is not None

            async def release() -> None:
                await asyncio.sleep(0.3)
                await store.release_lease("ai", holder.token)

            task = asyncio.create_task(release())
            async with mem.turn("queued") as t2:
                t2.reply("ok")
            await task
            assert t.lease_wait_seconds >= 0 and t2.lease_wait_seconds >= 0.25

    asyncio.run(main())
