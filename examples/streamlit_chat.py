"""A Streamlit chat whose conversation survives reruns, page refreshes and server restarts.

    streamlit run examples/streamlit_chat.py

The conversation id lives in the page URL (``?chat=...``) and the messages in the store
(``$CHATKEEP_URL``, default ``sqlite:///chatkeep.db``), opened once per server process. Refresh
the page, or stop and restart the server, and the conversation is still there. "New chat"
starts another one (a new id in the URL).

The replies come from a tiny offline responder (no LLM, no network) that answers only from the
window chatkeep hands it, so what it "remembers" is exactly what the store kept.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from chatkeep.adapters import streamlit as ck


def offline_responder(messages: list[dict[str, Any]]) -> str:
    """A stand-in for an LLM call: answers from the messages it is given, nothing else."""
    earlier = [str(m["content"]) for m in messages[:-1] if m["role"] == "user"]
    if not earlier:
        return "Nice to meet you. (This is the first thing you said.)"
    return f"Earlier you said: {' | '.join(earlier)}"


st.title("chatkeep + Streamlit")
if st.sidebar.button("New chat"):
    ck.new_conversation()
memory = ck.memory(system_prompt="You are a helpful assistant.", token_limit=3000)
st.caption(f"conversation {memory.session_id}")

for message in memory.history():
    st.chat_message(message.role).write(message.text)

if prompt := st.chat_input("Say something"):
    st.chat_message("user").write(prompt)
    with memory.turn(prompt) as turn:  # the lease serializes two tabs on one conversation
        reply = offline_responder(turn.messages)
        turn.reply(reply)
    st.chat_message("assistant").write(reply)
