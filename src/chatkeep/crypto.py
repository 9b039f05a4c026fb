"""Keys and envelopes for encryption at rest (AES-256-GCM, per-tenant keys from HKDF-SHA256).

A :class:`Keyring` holds one *current* master key (new writes) and any number of *old* ones
(reads only, until ``chatkeep rekey`` has moved everything to the current key). Each master
key has a public 16-hex-digit **key id** (an HKDF output, so it says nothing about the key);
every envelope names the id of the key that sealed it.

Each tenant gets its own data key: ``HKDF-SHA256(master, salt="chatkeep data key v1",
info=tenant)``. A value is sealed with a random 96-bit nonce and additional authenticated data
(AAD) that binds the envelope to its tenant, session, kind (message, summary, metadata), role,
key id and, from format 2 on, its own identity: a message's id, a summary's
``covers_through_seq``. So ciphertext copied to another tenant, session, message role, or
swapped between two messages of one session, fails to open.

Envelopes (ASCII, stored where the plaintext would be)::

    ck2:<key id>:<base64url(nonce || ciphertext || tag)>    written now
    ck1:<key id>:<base64url(nonce || ciphertext || tag)>    format 1: still read, no identity

The two formats use different AAD (each starts with its own version tag), so an envelope
cannot be relabelled from one format to the other. ``chatkeep rekey`` rewrites format-1
envelopes as format 2.

``cryptography`` is imported only when a keyring is built (``pip install
'chatkeep[encryption]'``). Keys never appear in a ``repr``, a message or a log line.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from chatkeep.errors import EncryptionKeyError, MissingDependency, TamperedRecord

PREFIX = "ck2:"  # what seal writes
PREFIXES = ("ck2:", "ck1:")  # what open reads
KEY_ENV = "CHATKEEP_ENCRYPTION_KEY"
OLD_KEYS_ENV = "CHATKEEP_ENCRYPTION_OLD_KEYS"
_NONCE = 12
_KID_LEN = 16
_SALT = b"chatkeep data key v1"
_CACHE_MAX = 4096


def _primitives() -> tuple[Any, Any, Any, Any]:
    try:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
    except ImportError as exc:
        raise MissingDependency(
            "encryption at rest needs the 'cryptography' package: "
            "pip install 'chatkeep[encryption]'"
        ) from exc
    return AESGCM, HKDF, hashes, InvalidTag


def generate_key() -> str:
    """A new random master key, base64 (32 bytes), for ``CHATKEEP_ENCRYPTION_KEY``."""
    return base64.b64encode(os.urandom(32)).decode()


def parse_key(text: str | bytes, what: str = "encryption key") -> bytes:
    """32 raw bytes from base64 (standard or URL-safe) text; the error never echoes the key."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    if not isinstance(text, str):
        raise EncryptionKeyError(f"the {what} must be base64 text, got {type(text).__name__}")
    cleaned = text.strip()
    try:
        raw = base64.b64decode(
            cleaned.replace("-", "+").replace("_", "/") + "=" * (-len(cleaned) % 4),
            validate=True,
        )
    except (binascii.Error, ValueError):
        raise EncryptionKeyError(
            f"the {what} is not valid base64; make one with `chatkeep keygen`"
        ) from None
    if len(raw) != 32:
        raise EncryptionKeyError(
            f"the {what} must decode to 32 bytes (AES-256), not {len(raw)}; "
            "make one with `chatkeep keygen`"
        )
    return raw


def _split(value: str) -> list[str]:
    return [part for part in value.replace(",", " ").split() if part]


class Keyring:
    """The current master key (may be None: read-only keyring) and old keys for reading."""

    def __init__(self, current: str | bytes | None, old: Iterable[str | bytes] = ()) -> None:
        self._aes, hkdf, self._hashes, self._invalid_tag = _primitives()
        self._hkdf = hkdf
        self._keys: dict[str, bytes] = {}
        self.current_id: str | None = None
        if current is not None:
            raw = current if isinstance(current, bytes) and len(current) == 32 else None
            raw = raw or parse_key(current, "current encryption key")
            self.current_id = self._add(raw)
        for i, key in enumerate(old):
            raw = key if isinstance(key, bytes) and len(key) == 32 else None
            self._add(raw or parse_key(key, f"old encryption key #{i + 1}"))
        if not self._keys:
            raise EncryptionKeyError("a keyring needs at least one key")
        self._cache: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring | None:
        """``$CHATKEEP_ENCRYPTION_KEY`` (current) and ``$CHATKEEP_ENCRYPTION_OLD_KEYS``
        (comma or space separated); None when neither is set."""
        env = os.environ if environ is None else environ
        current = env.get(KEY_ENV, "").strip() or None
        old = _split(env.get(OLD_KEYS_ENV, ""))
        if current is None and not old:
            return None
        return cls(current, old)

    def _add(self, raw: bytes) -> str:
        kid = self._derive(raw, b"chatkeep key id v1", 8).hex()
        self._keys.setdefault(kid, raw)
        return kid

    def _derive(self, raw: bytes, info: bytes, length: int, salt: bytes | None = None) -> bytes:
        kdf = self._hkdf(algorithm=self._hashes.SHA256(), length=length, salt=salt, info=info)
        return bytes(kdf.derive(raw))

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id this keyring can open, the current one first."""
        rest = tuple(k for k in self._keys if k != self.current_id)
        return (self.current_id, *rest) if self.current_id else rest

    def __repr__(self) -> str:
        old = [k for k in self._keys if k != self.current_id]
        return f"<Keyring current={self.current_id} old={old}>"

    def _aead(self, kid: str, tenant: str) -> Any:
        aead = self._cache.get((kid, tenant))
        if aead is None:
            data_key = self._derive(self._keys[kid], tenant.encode(), 32, _SALT)
            aead = self._aes(data_key)
            with self._lock:
                if len(self._cache) >= _CACHE_MAX:
                    self._cache.clear()
                self._cache[(kid, tenant)] = aead
        return aead

    @staticmethod
    def _aad(
        version: str, kid: str, tenant: str, session_id: str, kind: str, role: str, ident: str
    ) -> bytes:
        # tenant and session ids cannot hold control characters, so NUL separates unambiguously
        if version == "ck1":
            return "\0".join(("chatkeep-v1", kid, kind, tenant, session_id, role)).encode()
        return "\0".join(("chatkeep-v2", kid, kind, tenant, session_id, role, ident)).encode()

    def seal(
        self, plaintext: bytes, *, tenant: str, session_id: str, kind: str, role: str, ident: str
    ) -> str:
        """The envelope of ``plaintext`` under the current key, bound to ``ident`` (the
        message id, or what else names the value within its session)."""
        kid = self.current_id
        if kid is None:
            raise EncryptionKeyError(
                "this keyring has only old keys (for reading); set a current key "
                f"({KEY_ENV}) to write"
            )
        nonce = os.urandom(_NONCE)
        sealed = self._aead(kid, tenant).encrypt(
            nonce, plaintext, self._aad("ck2", kid, tenant, session_id, kind, role, ident)
        )
        return f"{PREFIX}{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode().rstrip('=')}"

    def open(
        self,
        envelope: str,
        *,
        tenant: str,
        session_id: str,
        kind: str,
        role: str,
        ident: str,
        where: str,
    ) -> bytes:
        """The plaintext of ``envelope`` (either format); :class:`TamperedRecord` if it fails
        authentication, :class:`EncryptionKeyError` if its key is not in this keyring."""
        version = envelope[:3]
        kid = envelope[4:20]  # PREFIX, then the key id
        if envelope[:4] not in PREFIXES or kid not in self._keys or envelope[20:21] != ":":
            kid = envelope_key_id(envelope, where)  # a shape error, or an unknown key:
            raise EncryptionKeyError(
                f"{where} is encrypted with key id {kid}, which this store was not given "
                f"(it has {', '.join(self.key_ids)}); add that key to {OLD_KEYS_ENV} or "
                f"set it as {KEY_ENV}"
            )
        text = envelope[21:]
        try:
            blob = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise TamperedRecord(f"{where}: the encrypted envelope is not base64") from None
        if len(blob) < _NONCE + 16:
            raise TamperedRecord(f"{where}: the encrypted envelope is truncated")
        try:
            return bytes(
                self._aead(kid, tenant).decrypt(
                    blob[:_NONCE],
                    blob[_NONCE:],
                    self._aad(version, kid, tenant, session_id, kind, role, ident),
                )
            )
        except self._invalid_tag:
            raise TamperedRecord(
                f"{where} failed authentication (key id {kid}): it was changed, or moved "
                "from another tenant, session or message"
            ) from None


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIXES)


def envelope_version(envelope: str) -> str:
    """``"ck2"`` or ``"ck1"`` (the caller checked :func:`is_sealed`)."""
    return envelope[:3]


def envelope_key_id(envelope: str, where: str) -> str:
    """The key id an envelope names (checked for shape only)."""
    kid = envelope[len(PREFIX) : len(PREFIX) + _KID_LEN]
    if (
        not envelope.startswith(PREFIXES)
        or len(kid) != _KID_LEN
        or envelope[len(PREFIX) + _KID_LEN : len(PREFIX) + _KID_LEN + 1] != ":"
        or any(c not in "0123456789abcdef" for c in kid)
    ):
        raise TamperedRecord(f"{where}: the encrypted envelope has no valid key id")
    return kid


def missing_key(where: str, envelope: str) -> EncryptionKeyError:
    """The error for encrypted data read by a store that has no key at all."""
    try:
        kid = envelope_key_id(envelope, where)
    except TamperedRecord:
        kid = "?"
    return EncryptionKeyError(
        f"{where} is encrypted (key id {kid}) but this store has no encryption key: set "
        f"{KEY_ENV} (or pass encryption=... to open_store) to read it"
    )
