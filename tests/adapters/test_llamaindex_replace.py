"""LlamaIndex set_messages is one atomic replace: a reader never sees the key empty or mixed,
and a process killed while it runs leaves the old list or the new one."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.llms import ChatMessage

import chatkeep
from chatkeep.adapters.llamaindex import ChatKeepChatStore


@pytest.fixture
def ck(url: str) -> Iterator[chatkeep.Store]:
    store = chatkeep.open_store(url)
    yield store
    store.close()


def msgs(tag: str, n: int) -> list[ChatMessage]:
    return [
        ChatMessage(role="user" if i % 2 == 0 else "assistant", content=f"{tag}{i}")
        for i in range(n)
    ]


def test_readers_never_see_set_messages_half_done(ck: chatkeep.Store) -> None:
    cs = ChatKeepChatStore(ck)
    lists = [msgs("a", 2), msgs("b", 4)]
    wanted = [[m.content for m in lst] for lst in lists]
    cs.set_messages("k", lists[0])
    done = threading.Event()
    seen: list[list[str | None]] = []

    def reader() -> None:
        while not done.is_set():
            seen.append([m.content for m in cs.get_messages("k")])

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(30):
            cs.set_messages("k", lists[i % 2])
    finally:
        done.set()
        thread.join(timeout=60)
    assert seen
    assert [s for s in seen if s not in wanted] == []


SETTER = """
import sys
from llama_index.core.llms import ChatMessage
import chatkeep
from chatkeep.adapters.llamaindex import ChatKeepChatStore
with chatkeep.open_store(sys.argv[1]) as store:
    cs = ChatKeepChatStore(store)
    gen = 1
    while True:
        cs.set_messages("k", [ChatMessage(role="user", content=f"g{gen}-{i}") for i in range(3)])
        print(gen, flush=True)
        gen += 1
"""


@pytest.mark.slow
def test_sigkilled_set_messages_never_empties_the_key(tmp_path: Path) -> None:
    # one backend here (each process imports LlamaIndex); tests/test_replace_crash.py kills
    # Store.replace itself on every durable backend
    url = f"sqlite:///{tmp_path}/chat.db"
    with chatkeep.open_store(url) as store:
        ChatKeepChatStore(store).set_messages("k", [ChatMessage(role="user", content="g0-0")])
    for delay in (0.0, 0.05):
        proc = subprocess.Popen(
            [sys.executable, "-c", SETTER, url], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline()  # it is replacing
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
        with chatkeep.open_store(url) as store:
            got = [m.content for m in ChatKeepChatStore(store).get_messages("k")]
        assert got, "set_messages lost the conversation"
        gen = got[0].split("-")[0]  # type: ignore[union-attr]
        assert got == [f"{gen}-{i}" for i in range(len(got))] and len(got) in (1, 3)
