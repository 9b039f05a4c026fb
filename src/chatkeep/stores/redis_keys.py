"""Sans-IO core of the ``redis://`` backend: URL options, key layout, record encoding, and
turning script replies into chatkeep's types. The sync (:mod:`chatkeep.stores.redis`) and async
(:mod:`chatkeep.stores.redis_async`) twins only add IO around these functions.

Key layout (``P`` = the ``?prefix=`` option, default ``chatkeep``)::

    {P:<len(tenant)>:<tenant>:<session id>}:<s|m|p|y|u|i|j|l|f>   one session (one hash tag)
    P:sessions:<len(tenant)>:<tenant>                             zset, the tenant's session ids
    P:expiry                                                       zset, tenant US id -> expiry ms
    P:tokenizer                                                    string, the tokenizer's name

Every key of a session carries the same ``{...}`` hash tag, so it lives in one Redis Cluster
slot and the session's scripts may touch all of them. The per-tenant index and the expiry
index are single keys in slots of their own, so no script may touch them together with a
session's keys: a script that creates a session reports it as not yet indexed, the backend
adds it to the index and then marks the session (``ix``). A crash in between leaves the mark
unset and the session's next write indexes it. Listing skips index entries whose session is
gone (expired, or deleted while a write re-added it), and purge and erase remove them.
"""

from __future__ import annotations

import importlib
import json
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from chatkeep.errors import (
    ConflictError,
    CorruptRecord,
    DurabilityWarning,
    InvalidInput,
    InvalidURL,
    MissingDependency,
    StoreFull,
    StoreUnavailable,
)
from chatkeep.policies.window import PINNED_ROLES, select_window
from chatkeep.stores._common import decode_row, parse_ts, stored, summary_of, ts
from chatkeep.stores.base import NewRow
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    SessionInfo,
    StoredMessage,
    Summary,
    Window,
)

SUFFIXES = ("s", "m", "p", "y", "u", "i", "j", "l", "f")
US = "\x1f"  # never inside ids (validated) nor inside JSON (escaped)
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # no ":": prefixes never nest
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")

#: Options chatkeep reads itself; everything else in ``PASS_THROUGH`` goes to redis-py.
OWN_OPTIONS = {"prefix", "timeout", "connect_timeout", "durability_warning", "cluster"}
PASS_THROUGH = {
    "db",
    "client_name",
    "max_connections",
    "health_check_interval",
    "ssl_cert_reqs",
    "ssl_ca_certs",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_check_hostname",
}


@dataclass(frozen=True)
class RedisOptions:
    """What a ``redis://`` / ``rediss://`` / ``unix://`` URL asks for."""

    driver_url: str  # the URL handed to redis-py (chatkeep's own options removed)
    label: str  # the redacted URL, for messages
    prefix: str = "chatkeep"
    timeout: float = 5.0
    connect_timeout: float = 5.0
    durability_warning: bool = True
    cluster: bool = False


def _seconds(opts: dict[str, str], key: str, default: float) -> float:
    raw = opts.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise InvalidURL(f"{key}={raw!r} is not a number of seconds") from None
    if not 0 < value <= 600:
        raise InvalidURL(f"{key} must be more than 0 and at most 600 seconds, not {raw}")
    return value


def parse_options(url: str, label: str) -> RedisOptions:
    parts = urlsplit(url)
    opts = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = set(opts) - OWN_OPTIONS - PASS_THROUGH
    if unknown:
        raise InvalidURL(
            f"unknown option(s) {', '.join(sorted(unknown))} in {label}; accepted: "
            f"{', '.join(sorted(OWN_OPTIONS | PASS_THROUGH))}"
        )
    prefix = opts.get("prefix", "chatkeep")
    if not _PREFIX_RE.fullmatch(prefix):
        raise InvalidURL(f"prefix={prefix!r}: use 1-64 characters from A-Z a-z 0-9 _ . : -")
    warn = opts.get("durability_warning", "on").lower()
    if warn not in ("on", "off"):
        raise InvalidURL(f"durability_warning={warn!r}; expected on or off")
    cluster = opts.get("cluster", "off").lower()
    if cluster not in ("on", "off"):
        raise InvalidURL(f"cluster={cluster!r}; expected on or off")
    if parts.scheme in ("redis", "rediss") and not parts.hostname:
        raise InvalidURL(f"{label} names no host; e.g. redis://127.0.0.1:6379/0")
    passed = urlencode({k: v for k, v in opts.items() if k in PASS_THROUGH})
    # built by hand: urlunsplit drops the "//" of unix:///path when the netloc is empty
    driver_url = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{passed}" if passed else "")
    return RedisOptions(
        driver_url=driver_url,
        label=label,
        prefix=prefix,
        timeout=_seconds(opts, "timeout", 5.0),
        connect_timeout=_seconds(opts, "connect_timeout", 5.0),
        durability_warning=warn == "on",
        cluster=cluster == "on",
    )


class Keys:
    """Key names for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.expiry = f"{prefix}:expiry"
        self.tokenizer = f"{prefix}:tokenizer"

    def tag(self, tenant: str, session_id: str) -> str:
        return f"{{{self.prefix}:{len(tenant)}:{tenant}:{session_id}}}"

    def session(self, tenant: str, session_id: str) -> list[str]:
        """The session's keys, in the order the scripts expect (``SUFFIXES``)."""
        tag = self.tag(tenant, session_id)
        return [f"{tag}:{s}" for s in SUFFIXES]

    def lease(self, tenant: str, session_id: str) -> list[str]:
        tag = self.tag(tenant, session_id)
        return [f"{tag}:l", f"{tag}:f"]

    def index(self, tenant: str) -> str:
        return f"{self.prefix}:sessions:{len(tenant)}:{tenant}"

    def index_pattern(self) -> str:
        """A SCAN pattern matching every tenant's session index (prefixes hold no globs)."""
        return f"{self.prefix}:sessions:*"

    def index_tenant(self, key: bytes | str) -> str | None:
        """The tenant a session index key names (None: not an index key of this prefix)."""
        text = key.decode() if isinstance(key, bytes) else key
        head = f"{self.prefix}:sessions:"
        size, sep, tenant = text[len(head) :].partition(":")
        if not text.startswith(head) or not sep or not size.isdigit():
            return None
        return tenant if len(tenant) == int(size) else None

    def tenant_pattern(self, tenant: str) -> str:
        """A SCAN pattern matching every session key of ``tenant`` (glob characters escaped)."""
        return _GLOB_SPECIAL.sub(r"\\\1", f"{{{self.prefix}:{len(tenant)}:{tenant}:") + "*"

    def expiry_pattern(self, tenant: str) -> str:
        return _GLOB_SPECIAL.sub(r"\\\1", tenant + US) + "*"

    @staticmethod
    def expiry_member(tenant: str, session_id: str) -> str:
        return f"{tenant}{US}{session_id}"

    @staticmethod
    def split_member(member: bytes | str) -> tuple[str, str]:
        text = member.decode() if isinstance(member, bytes) else member
        tenant, _, session_id = text.partition(US)
        return tenant, session_id


# -- values --------------------------------------------------------------------------------


def now_ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


def record(role: str, tokens: int, msg_id: str, created_at: str, body: bytes) -> bytes:
    return f"{role}{US}{tokens}{US}{msg_id}{US}{created_at}{US}".encode() + body


def decode_record(session_id: str, seq: int, raw: bytes | None) -> StoredMessage:
    if raw is None:
        raise CorruptRecord(f"message seq {seq} of session {session_id!r} is missing")
    try:  # one UTF-8 decode for the whole record (the hot path of every window)
        role, tokens, msg_id, created, body = raw.decode().split(US, 4)
        return decode_row(session_id, seq, role, int(tokens), msg_id, created, body)
    except ValueError as exc:  # UnicodeDecodeError included
        raise CorruptRecord(
            f"message seq {seq} of session {session_id!r} cannot be decoded: {exc}"
        ) from exc


def decode_records(session_id: str, first: int, raws: list[Any]) -> list[StoredMessage]:
    return [decode_record(session_id, first + i, raw) for i, raw in enumerate(raws)]


def as_hash(flat: list[Any] | dict[Any, Any]) -> dict[str, str]:
    """A session hash from HGETALL (a dict) or from a script (a flat list), as text."""
    items = flat.items() if isinstance(flat, dict) else zip(flat[::2], flat[1::2], strict=True)
    return {_text(k): _text(v) for k, v in items}


def _text(value: bytes | str | int) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def is_live(h: dict[str, str], now: datetime) -> bool:
    exp = h.get("expms", "")
    return bool(h) and (not exp or int(exp) > now_ms(now))


def info_of(tenant: str, session_id: str, h: dict[str, str]) -> SessionInfo:
    return SessionInfo(
        tenant=tenant,
        session_id=session_id,
        created_at=parse_ts(h["created"]),
        updated_at=parse_ts(h["updated"]),
        message_count=int(h["last"]),
        last_seq=int(h["last"]),
        total_tokens=int(h["total"]),
        metadata=json.loads(h.get("meta", "{}")),
        expires_at=parse_ts(h["expiso"]) if h.get("expms") else None,
        summary_through_seq=int(h.get("sumseq", 0)),
    )


def summary_from(h: dict[str, str]) -> Summary | None:
    if "sumtext" not in h:
        return None
    return summary_of(h["sumtext"], int(h["sumseq"]), int(h["sumtok"]), parse_ts(h["sumat"]))


def check_conflict(session_id: str, expected: int | None, actual: int) -> ConflictError:
    return ConflictError(
        f"session {session_id!r} is at seq {actual}, not {expected}: another writer appended "
        "first; re-read and retry",
        expected=expected,
        actual=actual,
    )


def summary_error(session_id: str, covers: int, last: int) -> InvalidInput:
    return InvalidInput(
        f"a summary of session {session_id!r} must cover seqs 0..{last}, not {covers}"
    )


def window_of(
    session_id: str, reply: list[Any], *, budget: int, pin_system: bool, reserve: int
) -> Window:
    if not reply:
        return select_window(
            budget=budget,
            system=(),
            summary=None,
            tail=(),
            total_count=0,
            last_seq=0,
            reserve=reserve,
        )
    flat, sysseqs, sysrecs, start, tail_raw = reply
    h = as_hash(flat)
    system = [
        decode_record(session_id, int(seq), raw) for seq, raw in zip(sysseqs, sysrecs, strict=True)
    ]
    tail = decode_records(session_id, int(start), tail_raw)
    if pin_system:
        tail = [m for m in tail if m.role not in PINNED_ROLES]
    last = int(h["last"])
    return select_window(
        budget=budget,
        system=system,
        summary=summary_from(h),
        tail=tail,
        total_count=last,
        last_seq=last,
        reserve=reserve,
    )


def prefix_range(prefix: str | None, after: str | None) -> tuple[bytes, bytes]:
    """ZRANGEBYLEX bounds for ids after ``after`` that start with ``prefix`` (UTF-8 byte order
    is code point order, the order every backend lists sessions in)."""
    low = b"-"
    if prefix:
        low = b"[" + prefix.encode()
    if after is not None and (not prefix or after.encode() >= prefix.encode()):
        low = b"(" + after.encode()
    high = b"[" + prefix.encode() + b"\xff" if prefix else b"+"
    return low, high


def expiry_args(expires_at: datetime | None) -> tuple[str, str, str]:
    if expires_at is None:
        return "clear", "", ""
    return (
        "set",
        str(now_ms(expires_at)),
        expires_at.astimezone(timezone.utc).isoformat(timespec="microseconds"),
    )


def dump_metadata(metadata: JSONObject | None) -> str:
    return "" if metadata is None else json.dumps(metadata, ensure_ascii=False)


def append_result(
    session_id: str, rows: list[NewRow], ids: list[str], reply: list[Any]
) -> AppendResult:
    """The result of the append script: stored now ({2, first}) or replayed ({0, first,
    last, records...})."""
    if reply[0] == 0:
        first, last = int(reply[1]), int(reply[2])
        old = tuple(decode_records(session_id, first, reply[3:]))
        return AppendResult(session_id, first, last, old, replayed=True)
    first = int(reply[1])
    done = tuple(
        stored(r.message, session_id=session_id, seq=first + i, tokens=r.tokens, msg_id=ids[i])
        for i, r in enumerate(rows)
    )
    return AppendResult(session_id, first, first + len(rows) - 1, done)


def lease_of(session_id: str, owner: str, token: Any, expires_at: float) -> Lease | None:
    return None if token is None else Lease(session_id, owner, int(token), expires_at)


# -- driver ----------------------------------------------------------------------------------


def import_redis() -> Any:
    try:
        import redis
    except ImportError as exc:  # pragma: no cover - the dev extras install it
        raise MissingDependency(
            "the redis:// store needs redis-py: pip install 'chatkeep[redis]'"
        ) from exc
    return redis


def make_client(options: RedisOptions, *, asyncio: bool) -> Any:
    """A redis-py client (``redis.Redis`` / ``RedisCluster``, sync or ``redis.asyncio``)."""
    redis = import_redis()
    if options.cluster:
        name = "redis.asyncio.cluster" if asyncio else "redis.cluster"
        cls = importlib.import_module(name).RedisCluster
    else:
        cls = (redis.asyncio if asyncio else redis).Redis
    return cls.from_url(options.driver_url, **client_kwargs(options))


def client_kwargs(options: RedisOptions) -> dict[str, Any]:
    """Driver settings: bounded timeouts (never hang) and no silent driver retries: an append
    re-sent after a dropped connection could be stored twice, so chatkeep decides what to
    retry (reads and keyed appends, once)."""
    redis = import_redis()
    return {
        "socket_timeout": options.timeout,
        "socket_connect_timeout": options.connect_timeout,
        "retry": redis.retry.Retry(redis.backoff.NoBackoff(), 0),
    }


def persistent_by_config(appendonly: dict[Any, Any], save: dict[Any, Any]) -> bool:
    """True when AOF is on or RDB ``save`` points are set (CONFIG GET replies)."""
    aof = _text(_field(appendonly, "appendonly")).lower()
    return aof == "yes" or bool(_text(_field(save, "save")).strip())


def _field(reply: dict[Any, Any], name: str) -> Any:
    return reply.get(name, reply.get(name.encode(), b""))


def persistent_by_info(info: dict[Any, Any]) -> bool | None:
    """From INFO persistence when CONFIG is disabled: AOF on is an answer; RDB save points
    are not shown there, so anything else is unknown (None)."""
    return True if int(info.get("aof_enabled", 0)) == 1 else None


def append_args(
    now: datetime,
    rows: list[NewRow],
    ids: list[str],
    idempotency_key: str | None,
    expect_last_seq: int | None,
) -> list[Any]:
    args: list[Any] = [
        now_ms(now),
        ts(now),
        idempotency_key or "",
        "" if expect_last_seq is None else expect_last_seq,
        len(rows),
    ]
    for row, msg_id in zip(rows, ids, strict=True):
        role = row.message.role
        created = ts(row.message.created_at)
        args += [role, row.tokens, record(role, row.tokens, msg_id, created, row.body)]
    return args


def warn_durability(label: str) -> None:
    warnings.warn(
        f"the Redis server at {label} persists nothing (appendonly no, no save points): a "
        "Redis restart or crash loses every conversation. Turn on AOF (appendonly yes, "
        "appendfsync everysec or always) or RDB snapshots, or use sqlite:// / postgresql://. "
        "Silence with ?durability_warning=off only where losing data is fine.",
        DurabilityWarning,
        stacklevel=5,
    )


def unavailable(label: str, exc: BaseException, *, retry: bool) -> StoreUnavailable:
    hint = (
        ""
        if retry
        else "; the request may or may not have been applied (pass an idempotency_key to "
        "appends so that retrying them is safe)"
    )
    message = f"Redis error on {label}: {type(exc).__name__}: {exc}{hint}"
    text = str(exc)
    if text.startswith("OOM ") or "maxmemory" in text:  # a refused script ran no write
        return StoreFull(f"{message}; the server's memory is full (maxmemory): nothing was stored")
    if text.startswith("MISCONF"):  # Redis refuses writes when it cannot persist them
        return StoreFull(f"{message}; the server cannot persist (its disk may be full)")
    return StoreUnavailable(message)


def tokenizer_error(label: str, held: bytes, name: str) -> str:
    return (
        f"{label} holds token counts made by {held.decode()!r}, not {name!r}; open it with "
        f"tokenizer={held.decode()!r} or use another ?prefix="
    )


def rewrite_args(now: datetime, rows: list[tuple[int, str, bytes]]) -> list[Any]:
    args: list[Any] = [now_ms(now), len(rows)]
    for seq, msg_id, body in rows:
        args.extend((seq, msg_id, body))
    return args
