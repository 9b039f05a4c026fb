"""API keys: one key per tenant, stored hashed in a JSON keys file.

A key looks like ``ck_<id>_<secret>``: ``id`` (8 hex characters) names the key in listings and
logs; ``secret`` is 32 random bytes (``secrets.token_urlsafe``), 256 bits of entropy. The file
keeps only ``sha256(key)``. A slow password hash (scrypt, PBKDF2) protects *low-entropy* human
passwords against guessing; against a 256-bit random key, guessing is hopeless either way, and a
fast hash keeps every request's check at microseconds. Hashes are compared with
``hmac.compare_digest``. The file is written atomically (temp file, fsync, rename) with mode 0600.

The server re-reads the file when it changes (size or mtime), so ``chatkeep keys revoke`` takes
effect on the next request without a restart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatkeep.errors import InvalidInput, StoreUnavailable
from chatkeep.types import utcnow
from chatkeep.validation import check_tenant

PREFIX = "ck_"
FILE_VERSION = 1


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    tenant: str
    hash: str
    created_at: str
    label: str = ""
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "hash": self.hash,
            "created_at": self.created_at,
            "label": self.label,
            "revoked_at": self.revoked_at,
        }


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _key_id(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] + "_" != PREFIX or len(parts[1]) != 8:
        return None
    return parts[1]


class KeyFile:
    """The keys file: create, list, revoke, and check a presented key."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int] | None = None
        self._records: dict[str, KeyRecord] = {}

    # -- reading ---------------------------------------------------------------------------
    def records(self) -> list[KeyRecord]:
        """Every key (active and revoked), re-read if the file changed."""
        self._refresh()
        return list(self._records.values())

    def active(self) -> list[KeyRecord]:
        return [r for r in self.records() if r.active]

    def tenant_for(self, key: str) -> str | None:
        """The tenant of an active key, or None. Constant-time on the secret."""
        key_id = _key_id(key)
        self._refresh()
        record = self._records.get(key_id or "")
        presented = hash_key(key)
        if record is None:
            hmac.compare_digest(presented, presented)  # same work whether or not the id exists
            return None
        if hmac.compare_digest(presented, record.hash) and record.active:
            return record.tenant
        return None

    def _refresh(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._records = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._records = self._load()
        self._stamp = stamp

    def _load(self) -> dict[str, KeyRecord]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if data.get("version") != FILE_VERSION:
                raise ValueError(f"unknown keys file version {data.get('version')!r}")
            return {k["id"]: KeyRecord(**k) for k in data["keys"]}
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise StoreUnavailable(f"cannot read the keys file {self.path}: {exc}") from exc

    # -- writing ---------------------------------------------------------------------------
    def create(self, tenant: str, *, label: str = "") -> tuple[str, KeyRecord]:
        """A new key for ``tenant``; returns ``(key, record)``. The key is shown only once."""
        check_tenant(tenant)
        records = {r.id: r for r in self.records()}
        key_id = secrets.token_hex(4)
        while key_id in records:
            key_id = secrets.token_hex(4)
        key = f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        record = KeyRecord(
            id=key_id,
            tenant=tenant,
            hash=hash_key(key),
            created_at=utcnow().isoformat(),
            label=label,
        )
        records[key_id] = record
        self._write(records)
        return key, record

    def revoke(self, key_id: str) -> KeyRecord:
        """Revoke the key with this id (a full key is accepted too)."""
        key_id = _key_id(key_id) or key_id
        records = {r.id: r for r in self.records()}
        record = records.get(key_id)
        if record is None:
            raise InvalidInput(f"no key with id {key_id!r} in {self.path}")
        if record.active:
            record = KeyRecord(**{**record.to_dict(), "revoked_at": utcnow().isoformat()})
            records[key_id] = record
            self._write(records)
        return record

    def _write(self, records: dict[str, KeyRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"version": FILE_VERSION, "keys": [r.to_dict() for r in records.values()]}, indent=2
        )
        fd, tmp = tempfile.mkstemp(prefix=".keys-", dir=self.path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(body + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._stamp = None
