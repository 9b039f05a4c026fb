"""Streamlit: a conversation that survives reruns, page refreshes and server restarts.

::

    from chatkeep.adapters import streamlit as ck

    memory = ck.memory()            # every rerun: same store, same conversation
    for m in memory.history():
        st.chat_message(m.role).write(m.text)

A Streamlit script runs top to bottom on every interaction, and ``st.session_state`` is lost
on a page refresh, a new tab and a server restart. Here nothing lives in the script: the store
is opened once per server process with ``st.cache_resource`` (closed when the cache releases
it), and the conversation id lives in the page URL (``?chat=<id>``), so a rerun, a refresh or
a restarted server finds the same conversation. Pass ``session_id=`` to key it by something
else (a logged-in user, say). Anyone with the URL can open the conversation: for a shared
deployment, derive the id from the authenticated user instead.
"""

from __future__ import annotations

import uuid
from typing import Any

from chatkeep.errors import InvalidInput, MissingDependency
from chatkeep.memory import Memory
from chatkeep.store import Store
from chatkeep.stores import default_url, open_store
from chatkeep.validation import check_session_id

try:
    import streamlit as st
except ImportError as exc:  # pragma: no cover - exercised by the import-guard test
    raise MissingDependency(
        "chatkeep.adapters.streamlit needs streamlit: pip install 'chatkeep[streamlit]'"
    ) from exc

__all__ = ["QUERY_PARAM", "conversation_id", "memory", "new_conversation", "store"]

QUERY_PARAM = "chat"


def _open(url: str) -> Store:
    return open_store(url)


def _release(value: Store) -> None:
    value.close()


def _valid(value: Store) -> bool:
    return not value.closed


_cached_open = st.cache_resource(
    show_spinner=False, on_release=_release, validate=_valid, max_entries=16
)(_open)


def store(url: str | None = None) -> Store:
    """The store at ``url`` (default ``$CHATKEEP_URL``, else ``sqlite:///chatkeep.db``),
    opened once per Streamlit server process and shared by every session and rerun."""
    if url is not None and not isinstance(url, str):
        raise InvalidInput(f"url must be a store URL string, not {url!r}")
    return _cached_open(url or default_url())


def conversation_id(query_param: str = QUERY_PARAM) -> str:
    """This page's conversation id: ``?<query_param>=`` in the URL, created (a random id
    written into the URL) when the page has none."""
    if not isinstance(query_param, str) or not query_param:
        raise InvalidInput("query_param must be a non-empty string")
    current = st.query_params.get(query_param)
    if current:
        return check_session_id(current)
    return new_conversation(query_param)


def new_conversation(query_param: str = QUERY_PARAM) -> str:
    """Start a fresh conversation on this page: a new random id in the URL. Returns it."""
    sid = uuid.uuid4().hex
    st.query_params[query_param] = sid
    return sid


def memory(
    session_id: str | None = None,
    *,
    url: str | None = None,
    query_param: str = QUERY_PARAM,
    **memory_kw: Any,
) -> Memory:
    """A :class:`chatkeep.Memory` for this page's conversation.

    Call it at the top of the script on every rerun: it is a cheap view (the store is cached,
    the conversation is in the store). ``memory_kw`` goes to ``Memory`` (``token_limit``,
    ``system_prompt``, ``lease_policy``...).
    """
    sid = session_id if session_id is not None else conversation_id(query_param)
    return Memory(sid, store=store(url), **memory_kw)
