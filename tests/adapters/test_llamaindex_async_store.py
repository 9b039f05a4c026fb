"""ChatKeepChatStore over a chatkeep AsyncStore: the a* methods run natively on every backend,
with the meanings of the sync methods; sync calls explain what to do."""

from __future__ import annotations

import asyncio
import copy

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.llms import ChatMessage

import chatkeep
from chatkeep import InvalidInput
from chatkeep.adapters.llamaindex import ChatKeepChatStore


def msgs(*texts: str) -> list[ChatMessage]:
    return [
        ChatMessage(role="user" if i % 2 == 0 else "assistant", content=t)
        for i, t in enumerate(texts)
    ]


def texts(messages: list[ChatMessage] | None) -> list[str | None]:
    assert messages is not None
    return [m.content for m in messages]


def test_async_methods_over_an_async_store(url: str, backend: str) -> None:
    async def go() -> None:
        async with await chatkeep.open_async_store(url) as astore:
            cs = ChatKeepChatStore(astore)
            await cs.aset_messages("k", msgs("a", "b", "c"))
            await cs.aset_messages("k", msgs("x", "y"))
            assert texts(await cs.aget_messages("k")) == ["x", "y"]
            await cs.async_add_message("k", ChatMessage(role="user", content="z"))
            await cs.async_add_message("k", ChatMessage(role="user", content="first"), idx=0)
            assert texts(await cs.aget_messages("k")) == ["first", "x", "y", "z"]
            assert (await cs.adelete_message("k", 1)).content == "x"  # type: ignore[union-attr]
            assert await cs.adelete_message("k", 9) is None
            assert (await cs.adelete_last_message("k")).content == "z"  # type: ignore[union-attr]
            await cs.aadd_messages("k", msgs("p", "q"))
            assert texts(await cs.aget_messages("k")) == ["first", "y", "p", "q"]
            await cs.aset_messages("other", msgs("o"))
            assert sorted(await cs.aget_keys()) == ["k", "other"]
            assert texts(await cs.adelete_messages("other")) == ["o"]
            assert await cs.adelete_messages("other") is None
            await cs.aset_messages("gone", [])
            assert await cs.aget_messages("gone") == []
            # tenants scope the async store as they scope the sync one
            acme = ChatKeepChatStore(astore, tenant="acme")
            assert await acme.aget_keys() == []
            with pytest.raises(InvalidInput):
                await cs.aset_messages("k", ChatMessage(role="user", content="one"))  # type: ignore[arg-type]
            assert texts(await cs.aget_messages("k")) == ["first", "y", "p", "q"]
            # sync calls explain what to do instead of failing obscurely
            with pytest.raises(InvalidInput, match="AsyncStore"):
                cs.get_messages("k")
            assert copy.deepcopy(cs.to_dict())["tenant"] == "default"

    asyncio.run(go())
    if backend == "memory":
        return  # nothing outlives the store
    with chatkeep.open_store(url) as store:  # a sync store sees what the async one wrote
        assert texts(ChatKeepChatStore(store).get_messages("k")) == ["first", "y", "p", "q"]
