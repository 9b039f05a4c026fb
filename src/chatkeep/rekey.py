"""Re-encrypt a store's sessions with the keyring's current key (``chatkeep rekey``).

A session needs rekeying when any of its messages, its summary or its metadata is plaintext
(written before encryption was turned on) or sealed with a key other than the current one.
With a keyring that has no current key (old keys only), rekeying *decrypts* everything back
to plaintext: the way to turn encryption off.

Each session is rewritten with the backend's atomic ``replace`` (checked against the last seq
it read, so a concurrent append is never lost: the session is retried, then reported) and
then its summary and metadata are sealed again. Sessions already under the current key are
skipped, so an interrupted run is resumed by running it again.

On ``file://`` the session's file is compacted right after, so the superseded records leave
the disk too; on SQLite ``secure_delete`` overwrites them; PostgreSQL keeps dead row versions
until VACUUM (autovacuum) reclaims them.

What a rewrite changes besides the envelopes: message ids are new, and the session's
idempotency keys are dropped (as ``replace`` does), so run it when no client is retrying
appends. Seqs, roles, timestamps, token counts and the expiry stay.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from chatkeep.crypto import envelope_key_id, is_sealed
from chatkeep.errors import ConflictError, InvalidInput, TamperedRecord
from chatkeep.store import Store
from chatkeep.stores.base import UNSET, NewRow
from chatkeep.stores.encrypted import META_KEY, SEALED, EncryptedBackend
from chatkeep.types import SessionInfo, StoredMessage, Summary
from chatkeep.validation import check_tenant, encode_body

RETRIES = 3


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
    return is_sealed(value) and envelope_key_id(value, "a value") == current


def _messages_need(messages: list[StoredMessage], current: str | None) -> bool:
    for m in messages:
        if m.format == SEALED:
            if not _target(str(m.content), current):
                return True
        elif current is not None:
            return True
    return False


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
        _messages_need(messages, current)
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


def rekey_session(backend: EncryptedBackend, tenant: str, session_id: str) -> int | None:
    """Rewrite one session under the current key; the number of messages rewritten, or None
    when it was already there. Raises ``ConflictError`` if the session changed meanwhile."""
    inner, sealer = backend.inner, backend.sealer
    current = sealer.keyring.current_id if sealer.keyring else None
    info = inner.info(tenant, session_id)
    if info is None:
        return None
    raw = inner.read(tenant, session_id, after_seq=0, limit=None, newest=False)
    summary = inner.get_summary(tenant, session_id)
    if not needs_rekey(raw, summary, info, current):
        return None
    if [m.seq for m in raw] != list(range(1, len(raw) + 1)):
        raise InvalidInput(f"session {session_id!r} has seqs that do not start at 1")
    plain = sealer.open_messages(tenant, raw)  # every row opens, or nothing is rewritten
    plain_summary = sealer.open_summary(tenant, session_id, summary)
    plain_info = sealer.open_info(tenant, info)
    assert plain_info is not None
    rewrite = _messages_need(raw, current)
    if rewrite:  # drops the summary, which is put back right after
        rows = [NewRow(m.message(), encode_body(m.message()), m.tokens) for m in plain]
        sealed = sealer.seal_rows(tenant, session_id, rows)
        inner.replace(tenant, session_id, sealed, expect_last_seq=raw[-1].seq)
    if (
        summary is not None
        and plain_summary is not None
        and (rewrite or not _target(summary.text, current))
    ):
        inner.put_summary(
            tenant,
            session_id,
            sealer.seal_summary(tenant, session_id, plain_summary.text),
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
    return len(raw) if rewrite else 0


def session_ids(store: Store, tenants: Iterable[str]) -> list[tuple[str, str]]:
    """Every (tenant, session id) to look at, listed up front (for a progress total)."""
    inner = _backend(store).inner
    found: list[tuple[str, str]] = []
    for tenant in tenants:
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
    tenants: Iterable[str],
    *,
    on_session: Callable[[str, str], None] | None = None,
) -> RekeyReport:
    """Re-encrypt every session of ``tenants`` with the store's current key (see module doc).
    ``on_session(tenant, session_id)`` is called after each session (for progress bars).
    A session that fails authentication is reported and left as it is; a missing key raises
    :class:`~chatkeep.errors.EncryptionKeyError` before that session is changed."""
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
