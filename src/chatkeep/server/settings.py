"""Server settings: one frozen object, read from the environment (``CHATKEEP_*``) or the CLI.

``chatkeep serve`` writes its options into the environment before it starts uvicorn, so that
workers and reloaded processes (which uvicorn starts fresh, through the factory
``chatkeep.server.app:app_from_env``) build exactly the same settings.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from chatkeep.errors import InvalidInput

if TYPE_CHECKING:
    from chatkeep.crypto import Keyring
from chatkeep.stores import default_url

LeasePolicy = Literal["queue", "reject"]
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_KEYS_FILE = "chatkeep-keys.json"

#: setting name -> environment variable
ENV: dict[str, str] = {
    "store_url": "CHATKEEP_URL",
    "host": "CHATKEEP_HOST",
    "port": "CHATKEEP_PORT",
    "keys_file": "CHATKEEP_KEYS_FILE",
    "max_body_bytes": "CHATKEEP_MAX_BODY_BYTES",
    "token_limit": "CHATKEEP_TOKEN_LIMIT",
    "system_prompt": "CHATKEEP_SYSTEM_PROMPT",
    "lease_policy": "CHATKEEP_LEASE_POLICY",
    "lease_timeout": "CHATKEEP_LEASE_TIMEOUT",
    "lease_ttl": "CHATKEEP_LEASE_TTL",
    "llm_base_url": "CHATKEEP_LLM_BASE_URL",
    "llm_model": "CHATKEEP_LLM_MODEL",
    "llm_api_key": "CHATKEEP_LLM_API_KEY",
    "llm_timeout": "CHATKEEP_LLM_TIMEOUT",
    "log_level": "CHATKEEP_LOG_LEVEL",
    "encryption_key": "CHATKEEP_ENCRYPTION_KEY",
    "encryption_old_keys": "CHATKEEP_ENCRYPTION_OLD_KEYS",
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server needs; every field has a sane default."""

    store_url: str = ""  # empty: $CHATKEEP_URL, else sqlite:///chatkeep.db
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    keys_file: str = DEFAULT_KEYS_FILE
    max_body_bytes: int = 2_000_000
    token_limit: int = 3000
    system_prompt: str = "You are a helpful assistant."
    lease_policy: LeasePolicy = "queue"
    lease_timeout: float = 30.0
    lease_ttl: float = 120.0
    llm_base_url: str = ""
    llm_model: str = ""
    llm_api_key: str = ""
    llm_timeout: float = 60.0
    log_level: str = "info"
    #: base64 master key for encryption at rest (empty: off); never shown in a repr
    encryption_key: str = field(default="", repr=False)
    #: older keys, comma separated, still accepted for reading (until ``chatkeep rekey``)
    encryption_old_keys: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if not self.store_url:
            object.__setattr__(self, "store_url", default_url())
        if self.lease_policy not in ("queue", "reject"):
            raise InvalidInput(
                f"lease_policy must be 'queue' or 'reject', not {self.lease_policy!r}"
            )
        for name in ("port", "max_body_bytes", "token_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidInput(f"{name} must be an int >= 0, got {value!r}")
        if self.max_body_bytes < 1024:
            raise InvalidInput("max_body_bytes must be at least 1024")
        if self.token_limit < 1:
            raise InvalidInput("token_limit must be at least 1")
        for name in ("lease_timeout", "lease_ttl", "llm_timeout"):
            if not 0 < float(getattr(self, name)) <= 86_400:
                raise InvalidInput(f"{name} must be in (0, 86400] seconds")
        if self.encryption_key or self.encryption_old_keys:
            from chatkeep.crypto import parse_key

            if self.encryption_key:
                parse_key(self.encryption_key, "encryption_key")  # fail at startup, not later
            for i, key in enumerate(self.encryption_old_keys.replace(",", " ").split()):
                parse_key(key, f"encryption_old_keys #{i + 1}")
        if self.llm_base_url and not self.llm_model:
            raise InvalidInput(
                "an LLM base_url needs a model too (--llm-model / CHATKEEP_LLM_MODEL)"
            )

    def keyring(self) -> Keyring | None:
        """The keyring for the store (None: encryption off)."""
        if not (self.encryption_key or self.encryption_old_keys):
            return None
        from chatkeep.crypto import Keyring

        old = self.encryption_old_keys.replace(",", " ").split()
        return Keyring(self.encryption_key or None, old)

    @property
    def keys_path(self) -> Path:
        return Path(self.keys_file).expanduser()

    @property
    def loopback(self) -> bool:
        """True when the server listens on loopback only (it may then run without keys)."""
        return is_loopback(self.host)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``CHATKEEP_*`` variables; keyword overrides win."""
        env = os.environ if environ is None else environ
        kw: dict[str, Any] = {}
        types = {f.name: f.type for f in fields(cls)}
        for name, var in ENV.items():
            raw = env.get(var)
            if raw is None or raw == "":
                continue
            kind = types[name]
            try:
                kw[name] = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
            except ValueError:
                raise InvalidInput(f"{var}={raw!r} is not a number") from None
        kw.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**kw)

    def to_env(self) -> dict[str, str]:
        """The environment that makes :meth:`from_env` rebuild these settings."""
        return {var: str(getattr(self, name)) for name, var in ENV.items()}


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and ``localhost``; anything else (0.0.0.0, a LAN address) is not."""
    if host.strip().lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
