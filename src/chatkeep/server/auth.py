"""Who is calling: an API key maps to one tenant; without keys, loopback runs as ``default``.

Keys come as ``Authorization: Bearer <key>`` (or ``X-API-Key: <key>``). Once the keys file
holds any key (even if all are revoked: revoking the last key must not open the server), every
``/v1`` request needs a valid one. With no keys file, or an empty one, the server runs keyless
in the single ``default`` tenant, which is only allowed on a loopback address (the app refuses
to start on any other interface unless there is an active key). A key sees its own tenant's
sessions only: another tenant's session is simply not there (404), never "forbidden" (403), so
ids do not leak.
"""

from __future__ import annotations

from fastapi import Request

from chatkeep.errors import ChatkeepError
from chatkeep.server.errors import ApiError
from chatkeep.server.keys import KeyFile
from chatkeep.store import DEFAULT_TENANT


class NoKeysOnPublicInterface(ChatkeepError):
    """Refusing to serve without API keys on a non-loopback address."""


def check_startup(host: str, loopback: bool, keys: KeyFile) -> None:
    if not loopback and not keys.active():
        raise NoKeysOnPublicInterface(
            f"refusing to listen on {host} without API keys: anyone who can reach it could "
            f"read every conversation. Create a key with `chatkeep keys create TENANT "
            f"--keys-file {keys.path}` (or bind to 127.0.0.1)."
        )


def presented_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


def tenant_of(request: Request, keys: KeyFile, *, loopback: bool) -> str:
    """The caller's tenant, or a 401 ApiError. Keyless only on loopback: if the keys file
    disappears under a server on another interface, it refuses everyone instead of opening."""
    key = presented_key(request)
    if not keys.records():
        if loopback:
            return DEFAULT_TENANT
        raise ApiError(
            401,
            "unauthorized",
            f"no API keys in {keys.path}, and this server is not on loopback: it refuses "
            "every request until a key exists (chatkeep keys create TENANT)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    tenant = keys.tenant_for(key) if key else None
    if tenant is None:
        raise ApiError(
            401,
            "unauthorized",
            "a valid API key is required (Authorization: Bearer <key>)"
            if key is None
            else "unknown or revoked API key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return tenant
