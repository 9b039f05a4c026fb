"""Encryption at rest as a wrapper over any backend: backends store envelopes, unaware.

What is encrypted, per tenant and session (see ``docs/reliability.md``):

- a message's whole body: content (text or parts), ``name``, ``tool_calls``, ``tool_call_id``,
  ``metadata`` and the framework payload (``format`` / ``payload``); the row keeps its role,
  seq, token count, id and timestamp in the clear, so windows still take one query;
- summaries' text;
- session metadata (stored as ``{"ck1": envelope}``).

Tenants, session ids, idempotency keys, lease owners, roles, seqs, token counts and timestamps
stay clear: they are what the stores index. Token counts are made on the plaintext before
sealing (by the public store), so the windows are the same with or without encryption.

An encrypted message is stored as a message with ``format = "sealed"`` and the envelope as
its content. With no keyring at all the wrapper still guards reads: a sealed row raises
:class:`~chatkeep.errors.EncryptionKeyError` instead of coming back as ciphertext.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from chatkeep.crypto import PREFIX, Keyring, is_sealed, missing_key
from chatkeep.errors import InvalidInput, TamperedRecord
from chatkeep.stores._common import _loads, new_id, payload_of, payloads_of
from chatkeep.stores.base import UNSET, AsyncBackend, Backend, NewRow, Rewrite, _Unset
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    Message,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
    stored_from_row,
)

SEALED = "sealed"
META_KEY = "ck1"
_MESSAGE_FIELDS = (
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "metadata",
    "created_at",
    "format",
    "payload",
)


def _sealed_message(role: str, envelope: str, created_at: datetime) -> Message:
    """A message that only carries the envelope (built without validation: a sealed tool
    message has no clear ``tool_call_id`` on purpose)."""
    msg = object.__new__(Message)
    values: tuple[Any, ...] = (role, envelope, None, None, None, {}, created_at, SEALED, None)
    for name, value in zip(_MESSAGE_FIELDS, values, strict=True):
        object.__setattr__(msg, name, value)
    return msg


class Sealer:
    """Every non-IO step: seal what is written, open what is read."""

    def __init__(self, keyring: Keyring | None) -> None:
        self.keyring = keyring
        self.sealing = keyring is not None and keyring.current_id is not None

    # -- messages ----------------------------------------------------------------------------
    def seal_rows(self, tenant: str, session_id: str, rows: list[NewRow]) -> list[NewRow]:
        if not self.sealing:
            return rows
        assert self.keyring is not None
        out = []
        for r in rows:
            role = r.message.role
            msg_id = r.msg_id or new_id()  # chosen here: the envelope is bound to it
            env = self.keyring.seal(
                r.body, tenant=tenant, session_id=session_id, kind="msg", role=role, ident=msg_id
            )
            body = f'{{"content":"{env}","format":"{SEALED}"}}'.encode()
            message = _sealed_message(role, env, r.message.created_at)
            out.append(NewRow(message, body, r.tokens, msg_id))
        return out

    def open_message(self, tenant: str, m: StoredMessage) -> StoredMessage:
        if m.format != SEALED:
            return m  # written before encryption was turned on (``chatkeep rekey`` seals it)
        where = f"message seq {m.seq} of session {m.session_id!r}"
        if not isinstance(m.content, str):
            raise TamperedRecord(f"{where}: a sealed message without an envelope")
        if self.keyring is None:
            raise missing_key(where, m.content)
        plain = self.keyring.open(
            m.content,
            tenant=tenant,
            session_id=m.session_id,
            kind="msg",
            role=m.role,
            ident=m.id,
            where=where,
        )
        try:
            body = _loads(plain)
        except ValueError as exc:
            raise TamperedRecord(f"{where}: decrypted body is not JSON") from exc
        return stored_from_row(m.session_id, m.seq, m.role, m.tokens, m.id, m.created_at, body)

    def open_messages(self, tenant: str, messages: list[StoredMessage]) -> list[StoredMessage]:
        return [self.open_message(tenant, m) if m.format == SEALED else m for m in messages]

    def open_optional(self, tenant: str, m: StoredMessage | None) -> StoredMessage | None:
        return None if m is None else self.open_message(tenant, m)

    def open_result(self, tenant: str, plain: list[NewRow], result: AppendResult) -> AppendResult:
        if not self.sealing and not result.replayed:
            return result  # keyless, fresh: the messages are the plaintext rows just written
        if not self.sealing or result.replayed:  # a replay returns what was stored back then
            if not any(m.format == SEALED for m in result.messages):
                return result
            messages = tuple(self.open_messages(tenant, list(result.messages)))
        else:  # rebuild from the plaintext we just sealed: no decryption on the write path
            messages = tuple(
                stored_from_row(
                    m.session_id, m.seq, m.role, m.tokens, m.id, m.created_at, _loads(r.body)
                )
                for m, r in zip(result.messages, plain, strict=True)
            )
        return dataclasses.replace(result, messages=messages)

    def open_window(self, tenant: str, session_id: str, w: Window) -> Window:
        if not (
            any(m.format == SEALED for m in w.messages)
            or any(m.format == SEALED for m in w.system)
            or (w.summary is not None and is_sealed(w.summary.text))
        ):
            return w
        return dataclasses.replace(
            w,
            system=tuple(self.open_messages(tenant, list(w.system))),
            messages=tuple(self.open_messages(tenant, list(w.messages))),
            summary=self.open_summary(tenant, session_id, w.summary),
        )

    # -- summaries and session metadata ------------------------------------------------------
    def seal_summary(self, tenant: str, session_id: str, text: str, covers: int) -> str:
        if not self.sealing:
            if is_sealed(text):  # it would read back as an envelope
                raise InvalidInput(f"a summary may not start with {PREFIX!r} (reserved)")
            return text
        assert self.keyring is not None
        return self.keyring.seal(
            text.encode(),
            tenant=tenant,
            session_id=session_id,
            kind="summary",
            role="",
            ident=str(covers),
        )

    def open_summary(self, tenant: str, session_id: str, s: Summary | None) -> Summary | None:
        if s is None or not is_sealed(s.text):
            return s
        where = f"the summary of session {session_id!r}"
        if self.keyring is None:
            raise missing_key(where, s.text)
        text = self.keyring.open(
            s.text,
            tenant=tenant,
            session_id=session_id,
            kind="summary",
            role="",
            ident=str(s.covers_through_seq),
            where=where,
        )
        return dataclasses.replace(s, text=text.decode())

    def seal_meta(self, tenant: str, session_id: str, meta: JSONObject | None) -> Any:
        if meta is None or not meta:
            return meta
        if not self.sealing:
            if len(meta) == 1 and is_sealed(meta.get(META_KEY)):
                raise InvalidInput(f"session metadata {{{META_KEY!r}: {PREFIX!r}...}} is reserved")
            return meta
        assert self.keyring is not None
        plain = json.dumps(meta, ensure_ascii=False, separators=(",", ":")).encode()
        env = self.keyring.seal(
            plain, tenant=tenant, session_id=session_id, kind="meta", role="", ident=""
        )
        return {META_KEY: env}

    def open_info(self, tenant: str, info: SessionInfo | None) -> SessionInfo | None:
        if info is None:
            return None
        env = info.metadata.get(META_KEY) if len(info.metadata) == 1 else None
        if not is_sealed(env):
            return info
        assert isinstance(env, str)
        where = f"the metadata of session {info.session_id!r}"
        if self.keyring is None:
            raise missing_key(where, env)
        plain = self.keyring.open(
            env,
            tenant=tenant,
            session_id=info.session_id,
            kind="meta",
            role="",
            ident="",
            where=where,
        )
        return dataclasses.replace(info, metadata=json.loads(plain))

    def open_page(self, tenant: str, page: SessionPage) -> SessionPage:
        items = tuple(self.open_info(tenant, i) for i in page.items)
        return dataclasses.replace(page, items=items)  # type: ignore[arg-type]


class EncryptedBackend:
    """A :class:`~chatkeep.stores.base.Backend` that seals on write and opens on read."""

    def __init__(self, inner: Backend, keyring: Keyring | None) -> None:
        self.inner = inner
        self.sealer = Sealer(keyring)
        self.scheme = inner.scheme
        self.ephemeral = inner.ephemeral

    def __getattr__(self, name: str) -> Any:  # backend-specific extras (persistent, ...)
        return getattr(self.inner, name)

    def open(self) -> None:
        self.inner.open()

    def close(self) -> None:
        self.inner.close()

    def bind_tokenizer(self, name: str) -> None:
        self.inner.bind_tokenizer(name)

    def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult:
        sealed = self.sealer.seal_rows(tenant, session_id, rows)
        result = self.inner.append(
            tenant,
            session_id,
            sealed,
            idempotency_key=idempotency_key,
            expect_last_seq=expect_last_seq,
        )
        return self.sealer.open_result(tenant, rows, result)

    def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        rows = self.inner.read(tenant, session_id, after_seq=after_seq, limit=limit, newest=newest)
        return self.sealer.open_messages(tenant, rows)

    def read_payloads(
        self,
        tenant: str,
        session_id: str,
        fmt: str,
        *,
        after_seq: int,
        limit: int | None,
        newest: bool,
    ) -> list[JSONObject | StoredMessage]:
        # a sealed row has format SEALED, so it comes back as a message, and is opened here
        inner = getattr(self.inner, "read_payloads", None)
        if inner is None:
            rows = self.read(tenant, session_id, after_seq=after_seq, limit=limit, newest=newest)
            return payloads_of(rows, fmt)
        out: list[JSONObject | StoredMessage] = inner(
            tenant, session_id, fmt, after_seq=after_seq, limit=limit, newest=newest
        )
        return [
            payload_of(self.sealer.open_message(tenant, r), fmt)
            if type(r) is StoredMessage and r.format == SEALED
            else r
            for r in out
        ]

    def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        w = self.inner.window(
            tenant, session_id, budget=budget, pin_system=pin_system, reserve=reserve
        )
        return self.sealer.open_window(tenant, session_id, w)

    def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        return self.sealer.open_optional(tenant, self.inner.pop(tenant, session_id))

    def clear(self, tenant: str, session_id: str) -> int:
        return self.inner.clear(tenant, session_id)

    def replace(
        self, tenant: str, session_id: str, rows: list[NewRow], *, expect_last_seq: int | None
    ) -> AppendResult:
        sealed = self.sealer.seal_rows(tenant, session_id, rows)
        result = self.inner.replace(tenant, session_id, sealed, expect_last_seq=expect_last_seq)
        return self.sealer.open_result(tenant, rows, result)

    def delete(self, tenant: str, session_id: str) -> bool:
        return self.inner.delete(tenant, session_id)

    def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        page = self.inner.sessions(tenant, prefix=prefix, limit=limit, cursor=cursor)
        return self.sealer.open_page(tenant, page)

    def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        return self.sealer.open_info(tenant, self.inner.info(tenant, session_id))

    def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        info = self.inner.update_session(
            tenant,
            session_id,
            metadata=self.sealer.seal_meta(tenant, session_id, metadata),
            expires_at=expires_at,
        )
        return self.sealer.open_info(tenant, info)  # type: ignore[return-value]

    def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        s = self.inner.get_summary(tenant, session_id)
        return self.sealer.open_summary(tenant, session_id, s)

    def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        sealed = self.sealer.seal_summary(tenant, session_id, text, covers_through_seq)
        s = self.inner.put_summary(tenant, session_id, sealed, covers_through_seq, tokens)
        return dataclasses.replace(s, text=text)

    def purge_expired(self, now: datetime) -> int:
        return self.inner.purge_expired(now)

    def erase(self, tenant: str) -> int:
        return self.inner.erase(tenant)

    def acquire_lease(self, tenant: str, session_id: str, owner: str, ttl: float) -> Lease | None:
        return self.inner.acquire_lease(tenant, session_id, owner, ttl)

    def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        return self.inner.release_lease(tenant, session_id, token)

    def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        """Raw: ``rows`` hold bodies as stored (rekey seals them itself)."""
        self.inner.rewrite_bodies(tenant, session_id, rows)

    def tenants(self) -> list[str]:
        return self.inner.tenants()


class AsyncEncryptedBackend:
    """The :class:`~chatkeep.stores.base.AsyncBackend` twin of :class:`EncryptedBackend`."""

    def __init__(self, inner: AsyncBackend, keyring: Keyring | None) -> None:
        self.inner = inner
        self.sealer = Sealer(keyring)
        self.scheme = inner.scheme
        self.ephemeral = inner.ephemeral

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def bind_tokenizer(self, name: str) -> None:
        await self.inner.bind_tokenizer(name)

    async def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult:
        sealed = self.sealer.seal_rows(tenant, session_id, rows)
        result = await self.inner.append(
            tenant,
            session_id,
            sealed,
            idempotency_key=idempotency_key,
            expect_last_seq=expect_last_seq,
        )
        return self.sealer.open_result(tenant, rows, result)

    async def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        rows = await self.inner.read(
            tenant, session_id, after_seq=after_seq, limit=limit, newest=newest
        )
        return self.sealer.open_messages(tenant, rows)

    async def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        w = await self.inner.window(
            tenant, session_id, budget=budget, pin_system=pin_system, reserve=reserve
        )
        return self.sealer.open_window(tenant, session_id, w)

    async def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        return self.sealer.open_optional(tenant, await self.inner.pop(tenant, session_id))

    async def clear(self, tenant: str, session_id: str) -> int:
        return await self.inner.clear(tenant, session_id)

    async def replace(
        self, tenant: str, session_id: str, rows: list[NewRow], *, expect_last_seq: int | None
    ) -> AppendResult:
        sealed = self.sealer.seal_rows(tenant, session_id, rows)
        result = await self.inner.replace(
            tenant, session_id, sealed, expect_last_seq=expect_last_seq
        )
        return self.sealer.open_result(tenant, rows, result)

    async def delete(self, tenant: str, session_id: str) -> bool:
        return await self.inner.delete(tenant, session_id)

    async def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        page = await self.inner.sessions(tenant, prefix=prefix, limit=limit, cursor=cursor)
        return self.sealer.open_page(tenant, page)

    async def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        return self.sealer.open_info(tenant, await self.inner.info(tenant, session_id))

    async def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        info = await self.inner.update_session(
            tenant,
            session_id,
            metadata=self.sealer.seal_meta(tenant, session_id, metadata),
            expires_at=expires_at,
        )
        return self.sealer.open_info(tenant, info)  # type: ignore[return-value]

    async def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        s = await self.inner.get_summary(tenant, session_id)
        return self.sealer.open_summary(tenant, session_id, s)

    async def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        sealed = self.sealer.seal_summary(tenant, session_id, text, covers_through_seq)
        s = await self.inner.put_summary(tenant, session_id, sealed, covers_through_seq, tokens)
        return dataclasses.replace(s, text=text)

    async def purge_expired(self, now: datetime) -> int:
        return await self.inner.purge_expired(now)

    async def erase(self, tenant: str) -> int:
        return await self.inner.erase(tenant)

    async def acquire_lease(
        self, tenant: str, session_id: str, owner: str, ttl: float
    ) -> Lease | None:
        return await self.inner.acquire_lease(tenant, session_id, owner, ttl)

    async def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        return await self.inner.release_lease(tenant, session_id, token)

    async def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        await self.inner.rewrite_bodies(tenant, session_id, rows)

    async def tenants(self) -> list[str]:
        return await self.inner.tenants()
