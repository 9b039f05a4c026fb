"""Every error chatkeep raises, under one root.

::

    ChatkeepError
    ├── InvalidInput                 bad input; nothing was stored
    │   ├── InvalidMessage
    │   ├── InvalidSessionId
    │   └── InvalidURL
    ├── ConflictError                the session changed under you (expect_last_seq)
    ├── LeaseError
    │   ├── LeaseBusy                another turn holds the session (policy "reject")
    │   └── LeaseTimeout             waited too long for the session (policy "queue")
    ├── StoreError
    │   ├── StoreUnavailable         the backend failed; the driver's error is chained
    │   │   └── StoreFull            the disk (or the server's memory) is full; nothing written
    │   ├── StoreClosed              the store was used after close()
    │   ├── CorruptRecord            stored data that cannot be read back
    │   │   └── TamperedRecord       encrypted data that fails authentication
    │   ├── EncryptionKeyError       encrypted data, but its key is not configured
    │   └── TokenizerMismatch        the store was written with another tokenizer
    ├── TokenizerUnavailable         a tokenizer could not be loaded
    └── MissingDependency            an optional extra is not installed

``ChatkeepWarning`` is the root of chatkeep's warnings (``EphemeralStoreWarning``,
``DurabilityWarning``).
"""

from __future__ import annotations


class ChatkeepError(Exception):
    """Root of every exception chatkeep raises on purpose."""


class InvalidInput(ChatkeepError, ValueError):
    """The caller passed something chatkeep will not store. Nothing was written."""


class InvalidMessage(InvalidInput):
    """A message is malformed: unknown role, bad content, non-JSON metadata, too large."""


class InvalidSessionId(InvalidInput):
    """A session id (or tenant name) is empty, too long or has control characters."""


class InvalidURL(InvalidInput):
    """A store URL names an unknown scheme or has bad options."""


class ConflictError(ChatkeepError):
    """The session's last seq is not what the caller expected (optimistic concurrency)."""

    def __init__(self, message: str, *, expected: int | None = None, actual: int | None = None):
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class LeaseError(ChatkeepError):
    """A per-session turn lease could not be taken."""


class LeaseBusy(LeaseError):
    """Another turn holds this session's lease and the policy is ``reject``."""


class LeaseTimeout(LeaseError):
    """Waited longer than the timeout for another turn on this session to finish."""


class StoreError(ChatkeepError):
    """The store could not do what was asked."""


class StoreUnavailable(StoreError):
    """The backend failed (disk, lock, network). The driver's own error is ``__cause__``."""


class StoreFull(StoreUnavailable):
    """The store's disk (or the Redis server's memory) is full. Nothing of the failed write was
    stored; writes work again once space is freed (retry with the same idempotency key)."""


class StoreClosed(StoreError):
    """The store was closed. Open it once for the app's lifetime, close it at shutdown."""


class CorruptRecord(StoreError):
    """A stored record cannot be decoded. chatkeep never skips such a record silently."""


class TamperedRecord(CorruptRecord):
    """Encrypted data failed authentication: it was changed, moved from another session or
    tenant, or the key with its id is not the one that wrote it. Nothing is returned."""


class EncryptionKeyError(StoreError):
    """Stored data is encrypted with a key this store was not given (or a key is malformed).
    The message names the key id, never the key."""


class TokenizerMismatch(StoreError):
    """The store's token counts were made by a different tokenizer than the one asked for."""


class TokenizerUnavailable(ChatkeepError):
    """A tokenizer name is unknown or its encoding cannot be loaded offline."""


class MissingDependency(ChatkeepError, ImportError):
    """An optional dependency is missing; the message names the pip extra to install."""


class ChatkeepWarning(UserWarning):
    """Root of the warnings chatkeep emits."""


class EphemeralStoreWarning(ChatkeepWarning):
    """An in-process store is used where it cannot survive what the app does."""


class DurabilityWarning(ChatkeepWarning):
    """The store's server is configured to lose data on restart (Redis without AOF or RDB)."""
