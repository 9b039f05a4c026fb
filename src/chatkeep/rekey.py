"""Re-encrypt a store's sessions with the keyring's current key (``chatkeep rekey``).

A session needs rekeying when any of its messages, its summary or its metadata is plaintext
(written before encryption was turned on), sealed with a key other than the current one, or
sealed in the older envelope format (``ck1``, not bound to the message's id). With a keyring
that has no current key (old keys only), rekeying *decrypts* everything back to plaintext: the
way to turn encryption off.

Messages are rewritten **in place** with the backend's ``rewrite_bodies``: each keeps its seq,
id, role, token count and timestamp, and the session keeps its idempotency keys (a client
retrying an append after a rekey gets its original messages back, not duplicates). A rewrite
names each message by (seq, id) and is all or nothing, so a message popped, cleared or
replaced meanwhile is never overwritten: the session is read again and retried, then
reported. The summary and metadata are sealed again after the messages.

Crash safety: every message is at every moment either its old envelope or its new one (each
rewrite is one transaction, Lua script or file record), and the keyring given to rekey opens
both, so a kill at any point leaves everything readable; sessions (and messages) already in
the target form are skipped, so running rekey again completes it.

On ``file://`` the session's file is compacted right after, so the superseded records leave
the disk too; on SQLite ``secure_delete`` overwrites them; PostgreSQL keeps dead row versions
until VACUUM (autovacuum) reclaims them.

Tenants: every backend lists the tenants it holds (``tenants()``), so rekey covers them all
unless told which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chatkeep.crypto import PREFIX, envelope_key_id, is_sealed
from chatkeep.errors import ConflictError, InvalidInput, TamperedRecord
from chatkeep.store import Store
from chatkeep.stores.base import UNSET, NewRow, Rewrite
from chatkeep.stores.encrypted import META_KEY, SEALED, EncryptedBackend
from chatkeep.types import SessionInfo, StoredMessage, Summary
from chatkeep.validation import check_tenant, encode_body

RETRIES = 3
CHUNK = 500  # messages per rewrite (one transaction / script / record each)


@dataclass
class RekeyReport:
    """What a run did, per tenant and in total."""

    sessions: int = 0  # looked at
    rewritten: int = 0  # sessions rewritten
    messages: int = 0  # messages re-encrypted
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # tenant, session, why


def _target(value: str, current: str | None) -> bool:
    """Is ``value`` (a stored text) already in the form rekey aims at?"""
    if current is None:
        return not is_sealed(value)
    return (
        is_sealed(value)
        and value.startswith(PREFIX)
        and envelope_key_id(value, "a value") == current
    )


def _message_needs(m: StoredMessage, current: str | None) -> bool:
    if m.format == SEALED:
        return not _target(str(m.content), current)
    return current is not None


def _meta_needs(info: SessionInfo, current: str | None) -> bool:
    meta = info.metadata
    if not meta:
        return False
    sealed = meta.get(META_KEY) if len(meta) == 1 else None
    if not is_sealed(sealed):
        return current is not None
    return not _target(str(sealed), current)


def needs_rekey(
    messages: list[StoredMessage],
    summary: Summary | None,
    info: SessionInfo,
    current: str | None,
) -> bool:
    """Does anything of this session (as stored) differ from the form rekey aims at?"""
    return (
        any(_message_needs(m, current) for m in messages)
        or (summary is not None and not _target(summary.text, current))
        or _meta_needs(info, current)
    )


def _backend(store: Store) -> EncryptedBackend:
    backend = store._backend
    if not isinstance(backend, EncryptedBackend) or backend.sealer.keyring is None:
        raise InvalidInput(
            "rekey needs an encryption key: set CHATKEEP_ENCRYPTION_KEY (the new key) and "
            "CHATKEEP_ENCRYPTION_OLD_KEYS (the keys data may still be under)"
        )
    return backend


def _new_body(backend: EncryptedBackend, tenant: str, sid: str, m: StoredMessage) -> bytes:
    """``m`` (opened) as it is to be stored: sealed under the current key and bound to its
    own id, or plaintext when the keyring has no current key."""
    plain = m.message()
    row = NewRow(plain, encode_body(plain), m.tokens, m.id)
    return backend.sealer.seal_rows(tenant, sid, [row])[0].body


def rekey_session(backend: EncryptedBackend, tenant: str, session_id: str) -> int | None:
    """Rewrite one session in place under the current key; the number of messages rewritten,
    or None when it was already there. Raises ``ConflictError`` if the session changed
    meanwhile (messages already rewritten stay rewritten: they are in the target form)."""
    inner, sealer = backend.inner, backend.sealer
    current = sealer.keyring.current_id if sealer.keyring else None
    info = inner.info(tenant, session_id)
    if info is None:
        return None
    raw = inner.read(tenant, session_id, after_seq=0, limit=None, newest=False)
    summary = inner.get_summary(tenant, session_id)
    if not needs_rekey(raw, summary, info, current):
        return None
    plain = sealer.open_messages(tenant, raw)  # every row opens, or nothing is rewritten
    plain_summary = sealer.open_summary(tenant, session_id, summary)
    plain_info = sealer.open_info(tenant, info)
    assert plain_info is not None
    todo: list[Rewrite] = [
        (m.seq, m.id, _new_body(backend, tenant, session_id, m))
        for m, stored in zip(plain, raw, strict=True)
        if _message_needs(stored, current)
    ]
    for start in range(0, len(todo), CHUNK):
        inner.rewrite_bodies(tenant, session_id, todo[start : start + CHUNK])
    if summary is not None and plain_summary is not None and not _target(summary.text, current):
        inner.put_summary(
            tenant,
            session_id,
            sealer.seal_summary(
                tenant, session_id, plain_summary.text, plain_summary.covers_through_seq
            ),
            plain_summary.covers_through_seq,
            plain_summary.tokens,
        )
    if _meta_needs(info, current):
        inner.update_session(
            tenant,
            session_id,
            metadata=sealer.seal_meta(tenant, session_id, plain_info.metadata),
            expires_at=UNSET,
        )
    compact = getattr(inner, "compact", None)  # file://: drop the superseded records now
    if compact is not None:
        compact(tenant, session_id)
    return len(todo)


def tenants_of(store: Store) -> list[str]:
    """Every tenant the store holds (the backend lists them)."""
    return _backend(store).inner.tenants()


def session_ids(store: Store, tenants: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Every (tenant, session id) to look at, listed up front (for a progress total); all
    tenants when ``tenants`` is None."""
    inner = _backend(store).inner
    found: list[tuple[str, str]] = []
    for tenant in inner.tenants() if tenants is None else tenants:
        check_tenant(tenant)
        cursor: str | None = None
        while True:
            page = inner.sessions(tenant, prefix=None, limit=500, cursor=cursor)
            found.extend((tenant, i.session_id) for i in page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
    return found


def rekey(
    store: Store,
    tenants: Iterable[str] | None = None,
    *,
    on_session: Callable[[str, str], None] | None = None,
) -> RekeyReport:
    """Re-encrypt every session of ``tenants`` (default: every tenant the store holds) with
    the store's current key (see module doc). ``on_session(tenant, session_id)`` is called
    after each session (for progress bars). A session that fails authentication is reported
    and left as it is; a missing key raises :class:`~chatkeep.errors.EncryptionKeyError`
    before that session is changed."""
    backend = _backend(store)
    return rekey_sessions(backend, session_ids(store, tenants), on_session=on_session)


def rekey_sessions(
    backend: EncryptedBackend,
    sessions: Iterable[tuple[str, str]],
    *,
    on_session: Callable[[str, str], None] | None = None,
) -> RekeyReport:
    report = RekeyReport()
    for tenant, sid in sessions:
        report.sessions += 1
        for attempt in range(RETRIES):
            try:
                done = rekey_session(backend, tenant, sid)
            except ConflictError:
                if attempt == RETRIES - 1:
                    report.skipped.append((tenant, sid, "it kept changing; run rekey again"))
                continue
            except (TamperedRecord, InvalidInput) as exc:
                report.skipped.append((tenant, sid, str(exc)))
                break
            if done is not None:
                report.rewritten += 1
                report.messages += done
            break
        if on_session is not None:
            on_session(tenant, sid)
    return report
