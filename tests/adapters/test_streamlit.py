"""Streamlit adapter, driven by Streamlit's own AppTest: reruns, refreshes, a server restart.

A page refresh is a new AppTest session with the same URL query (same server process, so the
cached store is shared); a server restart is a new AppTest in a brand-new Python process.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import chatkeep
from adapters.support import durable, run_py
from chatkeep.adapters import streamlit as ck

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "streamlit_chat.py")


@pytest.fixture(autouse=True)
def store_url(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("CHATKEEP_URL", url)
    with warnings.catch_warnings():
        if url.startswith("memory://"):
            # AppTest runs a real Streamlit app, where memory:// rightly warns (and pytest
            # makes chatkeep's warnings errors); tests/test_warnings.py proves that warning
            warnings.filterwarnings("ignore", category=chatkeep.EphemeralStoreWarning)
        yield url


def chat(at: AppTest) -> list[tuple[str, str]]:
    return [(m.name, m.markdown[0].value) for m in at.chat_message]


def say(at: AppTest, text: str) -> AppTest:
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
    return at


def test_reruns_keep_the_conversation_and_the_url_names_it(store_url: str) -> None:
    at = AppTest.from_file(EXAMPLE).run()
    assert not at.exception
    sid = at.query_params["chat"]
    assert sid and chat(at) == []
    say(at, "My name is Ada.")
    say(at, "What is my name?")
    at.run()  # a plain rerun (any widget interaction)
    assert chat(at) == [
        ("user", "My name is Ada."),
        ("assistant", "Nice to meet you. (This is the first thing you said.)"),
        ("user", "What is my name?"),
        ("assistant", "Earlier you said: My name is Ada."),
    ]
    assert ck.store().url == store_url  # the store the app used, from $CHATKEEP_URL
    assert [m.text for m in ck.store().read(sid)][::2] == ["My name is Ada.", "What is my name?"]


def test_a_page_refresh_finds_the_conversation(store_url: str) -> None:
    at = say(AppTest.from_file(EXAMPLE).run(), "Remember: blue.")
    sid = at.query_params["chat"]
    refreshed = AppTest.from_file(EXAMPLE)  # a new browser session (st.session_state is gone)
    refreshed.query_params["chat"] = sid
    refreshed.run()
    assert chat(refreshed)[0] == ("user", "Remember: blue.")
    assert refreshed.query_params["chat"] == sid
    say(refreshed, "And?")
    assert chat(refreshed)[-1] == ("assistant", "Earlier you said: Remember: blue.")


def test_a_new_tab_or_new_chat_starts_a_fresh_conversation() -> None:
    at = say(AppTest.from_file(EXAMPLE).run(), "first conversation")
    first = at.query_params["chat"]
    other_tab = AppTest.from_file(EXAMPLE).run()  # no ?chat= in the URL
    assert other_tab.query_params["chat"] != first and chat(other_tab) == []
    at.sidebar.button[0].click().run()  # "New chat"
    assert at.query_params["chat"] not in (first, other_tab.query_params["chat"])
    assert chat(at) == []


def test_a_server_restart_keeps_the_conversation(store_url: str) -> None:
    durable(store_url)
    at = say(AppTest.from_file(EXAMPLE).run(), "Before the restart.")
    sid = at.query_params["chat"]
    out = run_py(
        """
        import json, sys
        from streamlit.testing.v1 import AppTest
        at = AppTest.from_file(sys.argv[1])
        at.query_params["chat"] = sys.argv[2]
        at.run()
        assert not at.exception, at.exception
        at.chat_input[0].set_value("After the restart.").run()
        print(json.dumps([[m.name, m.markdown[0].value] for m in at.chat_message]))
        """,
        EXAMPLE,
        sid,
    )
    assert json.loads(out.strip().splitlines()[-1]) == [
        ["user", "Before the restart."],
        ["assistant", "Nice to meet you. (This is the first thing you said.)"],
        ["user", "After the restart."],
        ["assistant", "Earlier you said: Before the restart."],
    ]


def store_identity_script() -> None:
    import streamlit as st

    from chatkeep.adapters import streamlit as ck

    st.session_state.setdefault("ids", []).append(id(ck.store()))
    memory = ck.memory(session_id="fixed-user", token_limit=500)
    st.write(f"{memory.session_id} {len(memory.history())}")


def test_the_store_is_opened_once_and_an_explicit_session_id_wins() -> None:
    at = AppTest.from_function(store_identity_script).run()
    at.run()
    at.run()
    ids: Any = at.session_state["ids"]
    assert len(ids) == 3 and len(set(ids)) == 1
    assert "chat" not in at.query_params  # an explicit session id leaves the URL alone
    assert at.markdown[0].value == "fixed-user 0"
    store = ck.store()
    st.cache_resource.clear()  # the cache releases it: the store is closed
    assert store.closed


def test_a_bad_conversation_id_in_the_url_is_a_clear_error() -> None:
    at = AppTest.from_file(EXAMPLE)
    at.query_params["chat"] = "x" * 300
    at.run()
    assert at.exception and "session id is 300 characters" in at.exception[0].value
