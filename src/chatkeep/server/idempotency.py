"""``Idempotency-Key`` on ``POST /v1/chat``: a retried turn is neither stored twice nor sent to
the LLM twice.

No new store primitive is needed. The key travels two ways:

- in the user message's ``metadata["idempotency"]`` (the key and a SHA-256 of the request's
  ``message``), so that, holding the session's lease, the server can look at the newest
  :data:`LOOKBACK` messages and find a turn that already completed: it returns the stored reply
  without calling the LLM;
- as the append's ``idempotency_key`` (``chat:`` + SHA-256 of the header), so that even a turn
  older than the look-back is never appended twice: the store replays the original result
  (the LLM was called again in that case, and its new reply is dropped).

The lease makes the look-back exact for the common case (a client retrying after a timeout):
a retry that arrives while the first attempt still runs waits for the lease (``queue``) and then
finds the stored turn.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from chatkeep.server.errors import ApiError
from chatkeep.store import AsyncStore
from chatkeep.types import JSONObject, Message, StoredMessage

LOOKBACK = 64
"""How many of the session's newest messages are searched for a completed turn."""

META = "idempotency"


@dataclass(frozen=True)
class ChatKey:
    header: str
    body_sha256: str

    @classmethod
    def of(cls, header: str, message: str) -> ChatKey:
        return cls(header, hashlib.sha256(message.encode()).hexdigest())

    @property
    def append_key(self) -> str:
        return "chat:" + hashlib.sha256(self.header.encode()).hexdigest()

    def metadata(self) -> JSONObject:
        return {META: {"key": self.header, "body_sha256": self.body_sha256}}

    def user_message(self, text: str) -> Message:
        return Message.user(text, metadata=self.metadata())

    def matches(self, m: StoredMessage) -> bool:
        """Is ``m`` the user message of a turn sent with this key (whatever its body)?"""
        meta = m.metadata.get(META) if m.role == "user" else None
        return isinstance(meta, dict) and meta.get("key") == self.header

    def check_body(self, m: StoredMessage) -> None:
        """422 when the key was used with a different message."""
        meta = m.metadata.get(META)
        assert isinstance(meta, dict)
        if meta.get("body_sha256") != self.body_sha256:
            raise ApiError(
                422,
                "idempotency_key_reused",
                f"Idempotency-Key {self.header!r} was already used on this session for a "
                "different message; use a new key for a new turn",
            )


async def find_turn(
    store: AsyncStore, session_id: str, key: ChatKey
) -> tuple[StoredMessage, StoredMessage] | None:
    """The stored (user, assistant) pair of a completed turn with ``key`` among the newest
    :data:`LOOKBACK` messages, else None. Call it holding the session's lease. Raises a 422
    :class:`ApiError` when the key was used for a different message."""
    rows = await store.read(session_id, limit=LOOKBACK, newest=True)
    for i in range(len(rows) - 1, -1, -1):
        if key.matches(rows[i]):
            key.check_body(rows[i])
            # a chat turn stores its user message and reply in one atomic append
            if i + 1 < len(rows) and rows[i + 1].role == "assistant":
                return rows[i], rows[i + 1]
            return None
    return None
