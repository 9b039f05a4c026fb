"""``file:///dir``: one JSON Lines file per session, for prototypes.

Layout::

    dir/chatkeep.json                    format version and the tokenizer that counted tokens
    dir/.lock                            folder lock (tokenizer binding, erase, purge)
    dir/<tenant>/<session>.jsonl         the session's records, append-only
    dir/<tenant>/<session>.lock          the session's lock file (flock)
    dir/<tenant>/<session>.lease         the session's turn lease

Tenant and session ids are percent-encoded into file names (every byte but ``A-Z a-z 0-9 _ -``),
so any id maps to one name inside the folder and back; an id whose name would be too long is
stored under ``<sha256>.h`` and read back from the file's header record.

Every change is one appended line: a header, a batch of messages (one line, so a batch is all
or nothing), a pop, a clear, metadata, expiry or a summary. A line is acknowledged after
``write`` + ``fsync``. A crash can only leave a torn *last* line, which was never
acknowledged: readers ignore it and the next writer truncates it before appending. Any other
unreadable line raises :class:`~chatkeep.errors.CorruptRecord`. Files are rewritten (temp file,
fsync, atomic rename) only to compact away popped or cleared messages.

Each process caches a session's parsed state with the file offset it has read, and reads only
the new bytes on the next call. The window still walks the whole session in memory, and
``sessions()``/``purge_expired()`` read every file of a tenant: use SQLite once conversations
or their number grow.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from chatkeep.errors import ChatkeepError, CorruptRecord, StoreUnavailable, TokenizerMismatch
from chatkeep.policies.window import window_from_history
from chatkeep.stores._common import (
    check_expected,
    check_summary_args,
    decode_cursor,
    encode_cursor,
    new_id,
    parse_ts,
    summary_of,
    ts,
)
from chatkeep.stores.base import UNSET, NewRow, _Unset
from chatkeep.types import (
    ROLES,
    AppendResult,
    JSONObject,
    Lease,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
    stored_from_row,
    utcnow,
)

T = TypeVar("T")
log = logging.getLogger("chatkeep.file")
FORMAT = 1
_MAX_NAME = 200
_COMPACT_MIN_DEAD = 256


def _encode_name(value: str) -> str:
    name = quote(value, safe="").replace(".", "%2E").replace("~", "%7E")
    if len(name) > _MAX_NAME:
        return hashlib.sha256(value.encode()).hexdigest() + ".h"
    return name


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@dataclass
class _State:
    """A session as replayed from its file, up to ``offset`` bytes."""

    tenant: str
    session_id: str
    created_at: datetime
    updated_at: datetime
    inode: int = 0
    offset: int = 0
    messages: list[StoredMessage] = field(default_factory=list)
    metadata: JSONObject = field(default_factory=dict)
    expires_at: datetime | None = None
    summary: Summary | None = None
    idempotency: dict[str, tuple[int, int]] = field(default_factory=dict)
    dead: int = 0  # records that no longer contribute (popped or cleared messages)

    @property
    def last_seq(self) -> int:
        return self.messages[-1].seq if self.messages else 0

    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    def apply(self, rec: dict[str, Any]) -> None:
        kind = rec["k"]
        at = parse_ts(rec["at"])
        if kind == "h":
            self.tenant, self.session_id, self.created_at = rec["tenant"], rec["sid"], at
        elif kind == "b":
            first = self.last_seq + 1
            for i, row in enumerate(rec["m"]):
                seq, role, tokens, msg_id, created, body = row
                content = body.get("content", "")
                if seq != first + i or role not in ROLES or not isinstance(content, str | list):
                    raise ValueError(f"bad message record (seq {seq})")
                self.messages.append(
                    stored_from_row(
                        self.session_id, seq, role, tokens, msg_id, parse_ts(created), body
                    )
                )
            if rec.get("i") is not None:
                self.idempotency[rec["i"]] = (first, self.last_seq)
        elif kind == "pop":
            if not self.messages or self.messages[-1].seq != rec["seq"]:
                raise ValueError(f"pop of seq {rec['seq']} does not match the file")
            self.messages.pop()
            self.idempotency = {k: v for k, v in self.idempotency.items() if v[1] < rec["seq"]}
            if self.summary is not None and self.summary.covers_through_seq >= rec["seq"]:
                self.summary = None
            self.dead += 2
        elif kind == "clear":
            self.dead += len(self.messages) + 1
            self.messages.clear()
            self.idempotency.clear()
            self.summary = None
        elif kind == "meta":
            self.metadata = rec["metadata"]
        elif kind == "exp":
            self.expires_at = parse_ts(rec["expires_at"]) if rec["expires_at"] else None
        elif kind == "sum":
            self.summary = summary_of(rec["text"], rec["covers"], rec["tokens"], at)
        else:
            raise ValueError(f"unknown record kind {kind!r}")
        self.updated_at = at

    def copy(self) -> _State:
        """A snapshot that later appends (by this process) do not change."""
        return replace(
            self,
            messages=list(self.messages),
            metadata=dict(self.metadata),
            idempotency=dict(self.idempotency),
        )

    def snapshot_lines(self) -> list[str]:
        """The records of a compacted file that replays to this state."""
        at = ts(self.updated_at)
        lines = [
            _dumps(
                {"k": "h", "tenant": self.tenant, "sid": self.session_id, "at": ts(self.created_at)}
            )
        ]
        # consecutive messages become one batch each, keeping idempotency ranges intact
        ranges = {v: k for k, v in self.idempotency.items()}
        starts = {a: (a, b) for (a, b) in ranges}
        by_seq = {m.seq: m for m in self.messages}
        seq = 1
        while seq <= self.last_seq:
            key_range = starts.get(seq, (seq, seq))
            rows = [_row(by_seq[s]) for s in range(key_range[0], key_range[1] + 1)]
            lines.append(_dumps({"k": "b", "m": rows, "i": ranges.get(key_range), "at": at}))
            seq = key_range[1] + 1
        if self.metadata:
            lines.append(_dumps({"k": "meta", "metadata": self.metadata, "at": at}))
        if self.expires_at is not None:
            lines.append(_dumps({"k": "exp", "expires_at": ts(self.expires_at), "at": at}))
        if self.summary is not None:
            s = self.summary
            lines.append(
                _dumps(
                    {
                        "k": "sum",
                        "text": s.text,
                        "covers": s.covers_through_seq,
                        "tokens": s.tokens,
                        "at": ts(s.updated_at),
                    }
                )
            )
        return lines


def _row(m: StoredMessage) -> list[Any]:
    return [m.seq, m.role, m.tokens, m.id, ts(m.created_at), m.body()]


class FileBackend:
    scheme = "file"
    ephemeral = False

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.root = Path(path)
        self.timeout = timeout
        self._cache: dict[Path, _State] = {}
        self._cache_lock = threading.RLock()  # also serialises replays within this process

    # -- plumbing ----------------------------------------------------------------------------
    def _run(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ChatkeepError:
            raise
        except OSError as exc:
            raise StoreUnavailable(f"file store {self.root}: {what} failed: {exc}") from exc

    @contextmanager
    def _locked(self, path: Path, exclusive: bool) -> Iterator[None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + self.timeout
            delay = 0.001
            mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
            while True:
                try:
                    fcntl.flock(fd, mode)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise StoreUnavailable(
                            f"{path} stayed locked for {self.timeout:g}s (another process is "
                            "writing this session); raise ?timeout= or retry"
                        ) from exc
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _tenant_dir(self, tenant: str) -> Path:
        return self.root / _encode_name(tenant)

    def _paths(self, tenant: str, session_id: str) -> tuple[Path, Path]:
        base = self._tenant_dir(tenant) / _encode_name(session_id)
        return base.with_name(base.name + ".jsonl"), base.with_name(base.name + ".lock")

    def _load(self, path: Path) -> _State | None:
        """The session in ``path`` (caller holds its lock), reading only what is new."""
        with self._cache_lock:
            return self._load_locked(path)

    def _load_locked(self, path: Path) -> _State | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            with self._cache_lock:
                self._cache.pop(path, None)
            return None
        with self._cache_lock:
            state = self._cache.get(path)
        if state is None or state.inode != st.st_ino or state.offset > st.st_size:
            now = utcnow()
            state = _State("", "", now, now, inode=st.st_ino)
        if st.st_size > state.offset:
            with open(path, "rb") as f:
                f.seek(state.offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # a torn last line (no newline) is not acknowledged
            for lineno, line in enumerate(data[:end].splitlines(), 1):
                try:
                    state.apply(json.loads(line))
                except (ValueError, KeyError, TypeError, IndexError) as exc:
                    raise CorruptRecord(
                        f"{path}: unreadable record after byte {state.offset} "
                        f"(line {lineno} of the new data): {exc}"
                    ) from exc
            state.offset += end
        if not state.session_id:
            if state.offset == 0:
                return None  # only a torn first write: the session was never created
            raise CorruptRecord(f"{path} has no header record")
        with self._cache_lock:
            self._cache[path] = state
        return state

    def _append_lines(self, path: Path, state: _State | None, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            offset = state.offset if state else 0
            if os.fstat(fd).st_size != offset:
                os.ftruncate(fd, offset)  # drop a torn tail left by a crashed writer
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write ({written} of {len(data)} bytes)")
            os.fsync(fd)
        except BaseException:
            if state is not None:
                os.ftruncate(fd, state.offset)  # leave nothing half-written behind
            raise
        finally:
            os.close(fd)
        if state is None:
            _fsync_dir(path.parent)

    def _write(
        self, tenant: str, session_id: str, change: Callable[[_State | None], list[str] | None]
    ) -> _State | None:
        path, lock = self._paths(tenant, session_id)

        def go() -> _State | None:
            path.parent.mkdir(exist_ok=True)
            with self._locked(lock, exclusive=True):
                state = self._load(path)
                if state is not None and state.expired():
                    path.unlink()
                    state = self._load(path)
                created = ts(utcnow())
                lines = change(state)
                if lines:
                    if state is None:
                        head = {"k": "h", "tenant": tenant, "sid": session_id, "at": created}
                        lines = [_dumps(head), *lines]
                    self._append_lines(path, state, lines)
                    state = self._load(path)
                    if state is not None and state.dead > max(
                        _COMPACT_MIN_DEAD, len(state.messages)
                    ):
                        self._compact(path, state)
                return state.copy() if state is not None else None

        return self._run(f"writing session {session_id!r}", go)

    def _compact(self, path: Path, state: _State) -> None:
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in state.snapshot_lines()))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        with self._cache_lock:
            self._cache.pop(path, None)

    def _read(self, tenant: str, session_id: str) -> _State | None:
        path, lock = self._paths(tenant, session_id)

        def go() -> _State | None:
            if not path.exists():
                return None
            with self._locked(lock, exclusive=False):
                state = self._load(path)
                return None if state is None or state.expired() else state.copy()

        return self._run(f"reading session {session_id!r}", go)

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        def go() -> None:
            if not self.root.parent.exists():
                raise StoreUnavailable(f"directory {self.root.parent} does not exist")
            self.root.mkdir(exist_ok=True)

        self._run("opening", go)

    def close(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def bind_tokenizer(self, name: str) -> None:
        meta = self.root / "chatkeep.json"

        def go() -> None:
            with self._locked(self.root / ".lock", exclusive=True):
                if meta.exists():
                    try:
                        data = json.loads(meta.read_text(encoding="utf-8"))
                        recorded = data["tokenizer"]
                    except (ValueError, KeyError, TypeError) as exc:
                        raise CorruptRecord(f"{meta} is unreadable: {exc}") from exc
                    if data.get("format", FORMAT) > FORMAT:
                        raise StoreUnavailable(
                            f"{self.root} was written by a newer chatkeep (format "
                            f"{data['format']}); upgrade chatkeep"
                        )
                    if recorded != name:
                        raise TokenizerMismatch(
                            f"{self.root} holds token counts made by {recorded!r}, not "
                            f"{name!r}; open it with tokenizer={recorded!r} or use another folder"
                        )
                    return
                _atomic_write(meta, _dumps({"format": FORMAT, "tokenizer": name}))

        self._run("binding the tokenizer", go)

    # -- primitives --------------------------------------------------------------------------
    def append(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        idempotency_key: str | None,
        expect_last_seq: int | None,
    ) -> AppendResult:
        result: list[AppendResult] = []

        def change(state: _State | None) -> list[str] | None:
            last = state.last_seq if state else 0
            if state is not None and idempotency_key in state.idempotency:
                first, end = state.idempotency[idempotency_key]
                result.append(
                    AppendResult(
                        session_id, first, end, tuple(state.messages[first - 1 : end]), True
                    )
                )
                return None
            check_expected(session_id, expect_last_seq, last)
            batch = []
            for i, r in enumerate(rows):
                batch.append(
                    f"[{last + 1 + i},{_dumps(r.message.role)},{r.tokens},{_dumps(new_id())},"
                    f"{_dumps(ts(r.message.created_at))},{r.body.decode()}]"
                )
            idem = _dumps(idempotency_key)
            return [f'{{"k":"b","m":[{",".join(batch)}],"i":{idem},"at":"{ts(utcnow())}"}}']

        state = self._write(tenant, session_id, change)
        if result:
            return result[0]
        assert state is not None
        new = tuple(state.messages[-len(rows) :])
        return AppendResult(session_id, new[0].seq, new[-1].seq, new)

    def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        state = self._read(tenant, session_id)
        rows = state.messages[after_seq:] if state else []
        if limit is not None:
            rows = rows[-limit:] if newest else rows[:limit]
        return list(rows)

    def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        state = self._read(tenant, session_id)
        return window_from_history(
            state.messages if state else [],
            budget=budget,
            summary=state.summary if state else None,
            pin_system=pin_system,
            reserve=reserve,
        )

    def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        popped: list[StoredMessage] = []

        def change(state: _State | None) -> list[str] | None:
            if state is None or not state.messages:
                return None
            popped.append(state.messages[-1])
            return [_dumps({"k": "pop", "seq": state.last_seq, "at": ts(utcnow())})]

        self._write(tenant, session_id, change)
        return popped[0] if popped else None

    def clear(self, tenant: str, session_id: str) -> int:
        count: list[int] = []

        def change(state: _State | None) -> list[str] | None:
            if state is None:
                return None
            count.append(len(state.messages))
            return [_dumps({"k": "clear", "at": ts(utcnow())})]

        self._write(tenant, session_id, change)
        return count[0] if count else 0

    def delete(self, tenant: str, session_id: str) -> bool:
        path, lock = self._paths(tenant, session_id)

        def go() -> bool:
            if not path.parent.exists():
                return False
            with self._locked(lock, exclusive=True):
                path.with_suffix(".lease").unlink(missing_ok=True)
                try:
                    path.unlink()
                except FileNotFoundError:
                    return False
                with self._cache_lock:
                    self._cache.pop(path, None)
                _fsync_dir(path.parent)
                return True

        return self._run(f"deleting session {session_id!r}", go)

    def _states(self, tenant: str) -> list[_State]:
        folder = self._tenant_dir(tenant)
        if not folder.exists():
            return []
        out = []
        for path in folder.glob("*.jsonl"):
            with self._locked(path.with_suffix(".lock"), exclusive=False):
                state = self._load(path)
            if state is not None and not state.expired() and state.tenant == tenant:
                out.append(state)
        return out

    def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        after = decode_cursor(cursor)

        def go() -> SessionPage:
            states = sorted(
                (
                    s
                    for s in self._states(tenant)
                    if (prefix is None or s.session_id.startswith(prefix))
                    and (after is None or s.session_id > after)
                ),
                key=lambda s: s.session_id,
            )
            items = tuple(_info(s) for s in states[:limit])
            nxt = encode_cursor(states[limit - 1].session_id) if len(states) > limit else None
            return SessionPage(items, nxt)

        return self._run("listing sessions", go)

    def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        state = self._read(tenant, session_id)
        return _info(state) if state else None

    def update_session(
        self,
        tenant: str,
        session_id: str,
        *,
        metadata: JSONObject | None,
        expires_at: datetime | _Unset | None = UNSET,
    ) -> SessionInfo:
        def change(state: _State | None) -> list[str] | None:
            at = ts(utcnow())
            lines = []
            if metadata is not None:
                lines.append(_dumps({"k": "meta", "metadata": metadata, "at": at}))
            if not isinstance(expires_at, _Unset):
                exp = ts(expires_at) if expires_at else None
                lines.append(_dumps({"k": "exp", "expires_at": exp, "at": at}))
            return lines or [
                _dumps({"k": "meta", "metadata": state.metadata if state else {}, "at": at})
            ]

        state = self._write(tenant, session_id, change)
        assert state is not None
        return _info(state)

    def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        state = self._read(tenant, session_id)
        return state.summary if state else None

    def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        def change(state: _State | None) -> list[str] | None:
            check_summary_args(session_id, covers_through_seq, state.last_seq if state else 0)
            return [
                _dumps(
                    {
                        "k": "sum",
                        "text": text,
                        "covers": covers_through_seq,
                        "tokens": tokens,
                        "at": ts(utcnow()),
                    }
                )
            ]

        state = self._write(tenant, session_id, change)
        assert state is not None and state.summary is not None
        return state.summary

    def _remove_where(self, match: Callable[[_State], bool], tenant: str | None) -> int:
        if not self.root.exists():
            return 0
        folders = (
            [self._tenant_dir(tenant)]
            if tenant is not None
            else [p for p in self.root.iterdir() if p.is_dir()]
        )
        removed = 0
        for folder in folders:
            if not folder.exists():
                continue
            for path in folder.glob("*.jsonl"):
                with self._locked(path.with_suffix(".lock"), exclusive=True):
                    try:
                        state = self._load(path)
                    except CorruptRecord as exc:
                        if tenant is None:  # purge: one bad file must not stop the store
                            log.warning("purge skipped a session it cannot read: %s", exc)
                            continue
                        state = None  # erase: the tenant's files go, readable or not
                    if state is not None and not match(state):
                        continue
                    path.unlink()
                    path.with_suffix(".lease").unlink(missing_ok=True)
                    with self._cache_lock:
                        self._cache.pop(path, None)
                    removed += 1
            for leftover in folder.glob("*.lease"):
                if tenant is not None:
                    leftover.unlink(missing_ok=True)
            _fsync_dir(folder)
        return removed

    def purge_expired(self, now: datetime) -> int:
        def go() -> int:
            with self._locked(self.root / ".lock", exclusive=True):
                return self._remove_where(
                    lambda s: s.expires_at is not None and s.expires_at <= now, None
                )

        return self._run("purging expired sessions", go)

    def erase(self, tenant: str) -> int:
        def go() -> int:
            with self._locked(self.root / ".lock", exclusive=True):
                return self._remove_where(lambda s: s.tenant == tenant, tenant)

        return self._run(f"erasing tenant {tenant!r}", go)

    def acquire_lease(self, tenant: str, session_id: str, owner: str, ttl: float) -> Lease | None:
        path, lock = self._paths(tenant, session_id)
        lease_path = path.with_suffix(".lease")

        def go() -> Lease | None:
            path.parent.mkdir(exist_ok=True)
            with self._locked(lock, exclusive=True):
                now = time.time()
                row = _read_lease(lease_path)
                if row is not None and row["expires"] > now and row["owner"] != owner:
                    return None
                token = (row["token"] if row else 0) + 1
                _atomic_write(
                    lease_path,
                    _dumps({"owner": owner, "token": token, "expires": now + ttl}),
                    sync=False,
                )
                return Lease(session_id, owner, token, now + ttl)

        return self._run(f"leasing session {session_id!r}", go)

    def release_lease(self, tenant: str, session_id: str, token: int) -> bool:
        path, lock = self._paths(tenant, session_id)
        lease_path = path.with_suffix(".lease")

        def go() -> bool:
            if not lease_path.exists():
                return False
            with self._locked(lock, exclusive=True):
                row = _read_lease(lease_path)
                if row is None or row["token"] != token or row["expires"] <= 0:
                    return False
                _atomic_write(lease_path, _dumps({**row, "expires": 0}), sync=False)
                return True

        return self._run(f"releasing the lease of {session_id!r}", go)


def _info(s: _State) -> SessionInfo:
    return SessionInfo(
        tenant=s.tenant,
        session_id=s.session_id,
        created_at=s.created_at,
        updated_at=s.updated_at,
        message_count=len(s.messages),
        last_seq=s.last_seq,
        total_tokens=sum(m.tokens for m in s.messages),
        metadata=dict(s.metadata),
        expires_at=s.expires_at,
        summary_through_seq=s.summary.covers_through_seq if s.summary else 0,
    )


def _read_lease(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CorruptRecord(f"{path} is unreadable: {exc}") from exc


def _atomic_write(path: Path, text: str, *, sync: bool = True) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
