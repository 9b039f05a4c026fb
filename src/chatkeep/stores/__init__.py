"""Backends, chosen by URL.

==========================  ==============================================================
``sqlite:///chatkeep.db``   embedded default; three slashes = relative path, four = absolute
                            (``?synchronous=full|normal``, ``?timeout=30``)
``file:///abs/dir``         JSON Lines per session (``file:rel/dir`` for a relative folder)
``memory://``               in-process only, for tests
``postgresql://host/db``    shared PostgreSQL for many app servers (``postgres://`` too;
                            ``?schema=``, ``min_size``, ``max_size``, ``pool_timeout``,
                            ``connect_timeout``, ``statement_timeout``,
                            ``prepare_threshold``, ``pgbouncer=true`` behind PgBouncer;
                            other options go to libpq)
``redis://host:6379/0``     Redis (also ``rediss://``, ``unix:///path.sock``); needs the
                            ``redis`` extra (``?prefix=chatkeep``, ``?timeout=5``,
                            ``?connect_timeout=5``, ``?durability_warning=on|off``,
                            ``?cluster=on`` for a Redis Cluster)
==========================  ==============================================================

The default URL is ``$CHATKEEP_URL``, else ``sqlite:///chatkeep.db`` in the working directory.

Encryption at rest works the same on every scheme: ``open_store(url, encryption=key)`` or
``$CHATKEEP_ENCRYPTION_KEY`` (see :mod:`chatkeep.crypto` and ``docs/reliability.md``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from chatkeep.errors import InvalidInput, InvalidURL

if TYPE_CHECKING:  # chatkeep.store imports this package; import it lazily at run time
    from chatkeep.crypto import Keyring
    from chatkeep.store import AsyncStore, Store
    from chatkeep.stores.base import AsyncBackend, Backend
    from chatkeep.tokenizers import Tokenizer
    from chatkeep.validation import Limits

DEFAULT_URL = "sqlite:///chatkeep.db"
SCHEMES = ("sqlite", "file", "memory", "postgresql", "redis")
REDIS_SCHEMES = ("redis", "rediss", "unix")


def default_url() -> str:
    """``$CHATKEEP_URL`` if set, else ``sqlite:///chatkeep.db``."""
    return os.environ.get("CHATKEEP_URL") or DEFAULT_URL


def redact(url: str) -> str:
    """The URL without a password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return parts._replace(netloc=netloc).geturl()
    return url


def _options(query: str, allowed: set[str], url: str) -> dict[str, str]:
    opts = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=False))
    unknown = set(opts) - allowed
    if unknown:
        raise InvalidURL(
            f"unknown option(s) {', '.join(sorted(unknown))} in {redact(url)}; "
            f"accepted: {', '.join(sorted(allowed)) or 'none'}"
        )
    return opts


def _float(opts: dict[str, str], key: str, default: float) -> float:
    try:
        value = float(opts.get(key, default))
    except ValueError:
        raise InvalidURL(f"{key}={opts[key]!r} is not a number") from None
    if not 0 < value < 3600:
        raise InvalidURL(f"{key} must be between 0 and 3600 seconds")
    return value


def make_backend(url: str) -> Backend:
    """The (unopened) synchronous backend for ``url``."""
    if not isinstance(url, str) or ("://" not in url and not url.startswith("file:")):
        raise InvalidURL(
            f"not a store URL: {url!r}; expected e.g. {DEFAULT_URL}, file:///path/to/dir "
            "or memory://"
        )
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        from chatkeep.stores.sqlite import SQLiteBackend

        opts = _options(parts.query, {"synchronous", "timeout"}, url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc:
            raise InvalidURL(f"{redact(url)}: use sqlite:///relative.db or sqlite:////abs.db")
        if not path:
            raise InvalidURL(f"{redact(url)} names no database file")
        return SQLiteBackend(
            path,
            synchronous=opts.get("synchronous", "full"),
            timeout=_float(opts, "timeout", 30.0),
        )
    if scheme == "file":
        from chatkeep.stores.file import FileBackend

        opts = _options(parts.query, {"timeout"}, url)
        if parts.netloc not in ("", "localhost"):
            raise InvalidURL(f"{redact(url)}: file URLs name a local folder")
        if not parts.path:
            raise InvalidURL(f"{redact(url)} names no folder")
        return FileBackend(parts.path, timeout=_float(opts, "timeout", 30.0))
    if scheme == "memory":
        from chatkeep.stores.memory import MemoryBackend

        _options(parts.query, set(), url)
        return MemoryBackend()
    if scheme in REDIS_SCHEMES:
        from chatkeep.stores.redis import RedisBackend

        return RedisBackend(url, redact(url))
    if scheme in ("postgresql", "postgres"):
        try:
            from chatkeep.stores.postgres import PostgresBackend
        except ImportError as exc:
            from chatkeep.errors import MissingDependency

            raise MissingDependency(
                f"{scheme}:// needs psycopg 3 and psycopg_pool ({exc.name} is missing): "
                "pip install 'chatkeep[postgres]'"
            ) from exc
        return PostgresBackend(url, redact(url))
    raise InvalidURL(
        f"unknown store scheme {scheme!r} in {redact(url)}; this version supports "
        f"{', '.join(s + '://' for s in SCHEMES)}"
    )


def make_async_backend(url: str) -> AsyncBackend:
    """The (unopened) async backend for ``url``."""
    if isinstance(url, str) and urlsplit(url).scheme.lower() in REDIS_SCHEMES:
        from chatkeep.stores.redis_async import AsyncRedisBackend

        return AsyncRedisBackend(url, redact(url))
    from chatkeep.stores.threaded import ThreadedAsyncBackend

    backend = make_backend(url)  # validates the URL for every scheme
    if backend.scheme == "postgresql":
        from chatkeep.stores.postgres_async import AsyncPostgresBackend

        return AsyncPostgresBackend(url, redact(url))
    return ThreadedAsyncBackend(backend)


def resolve_keyring(encryption: Keyring | str | bool | None) -> Keyring | None:
    """The keyring for ``encryption``: a :class:`~chatkeep.crypto.Keyring`, a base64 key,
    ``None`` (from ``$CHATKEEP_ENCRYPTION_KEY`` / ``$CHATKEEP_ENCRYPTION_OLD_KEYS``, if set)
    or ``False`` (none, whatever the environment says)."""
    if encryption is None:
        from chatkeep.crypto import KEY_ENV, OLD_KEYS_ENV, Keyring

        if not (os.environ.get(KEY_ENV) or os.environ.get(OLD_KEYS_ENV)):
            return None  # don't import cryptography when nothing asks for it
        return Keyring.from_env()
    if encryption is False:
        return None
    if isinstance(encryption, str):
        from chatkeep.crypto import Keyring

        return Keyring(encryption)
    if encryption is True:
        raise InvalidInput("encryption=True names no key; pass the key or a Keyring")
    return encryption


def with_encryption(backend: Any, keyring: Keyring | None, *, asynchronous: bool = False) -> Any:
    """``backend`` sealing on write and opening on read with ``keyring``. Without a keyring a
    durable backend is still wrapped, so encrypted rows raise a clear error instead of coming
    back as ciphertext; an in-process store without a key is returned as is."""
    if keyring is None and backend.ephemeral:
        return backend
    from chatkeep.stores.encrypted import AsyncEncryptedBackend, EncryptedBackend

    return (AsyncEncryptedBackend if asynchronous else EncryptedBackend)(backend, keyring)


def open_store(
    url: str | None = None,
    *,
    tenant: str = "default",
    tokenizer: Tokenizer | str | None = None,
    limits: Limits | None = None,
    encryption: Keyring | str | bool | None = None,
    **options: Any,
) -> Store:
    """Open the store at ``url`` (default: ``$CHATKEEP_URL`` or ``sqlite:///chatkeep.db``).

    Open it once per process and share it; use it as a context manager or call ``close()``.
    ``encryption`` turns on encryption at rest (see :func:`resolve_keyring`).
    """
    from chatkeep.store import Store

    url = url or default_url()
    store = Store(
        with_encryption(make_backend(url), resolve_keyring(encryption)),
        url=redact(url),
        tenant=tenant,
        tokenizer=tokenizer,
        limits=limits,
        **options,
    )
    return store.open()


async def open_async_store(
    url: str | None = None,
    *,
    tenant: str = "default",
    tokenizer: Tokenizer | str | None = None,
    limits: Limits | None = None,
    encryption: Keyring | str | bool | None = None,
    **options: Any,
) -> AsyncStore:
    """The async twin of :func:`open_store`."""
    from chatkeep.store import AsyncStore

    url = url or default_url()
    store = AsyncStore(
        with_encryption(make_async_backend(url), resolve_keyring(encryption), asynchronous=True),
        url=redact(url),
        tenant=tenant,
        tokenizer=tokenizer,
        limits=limits,
        **options,
    )
    return await store.open()
