"""``file:///dir``: one JSON Lines file per session, for prototyping locally.

Layout::

    dir/chatkeep.json              format version and the tokenizer that counted the tokens
    dir/.lock                      folder lock: tokenizer binding, erase, purge
    dir/<T>/<S>.jsonl              the session's records (T = tenant, S = session id, encoded)
    dir/<T>/<S>.lock               the session's lock file (``flock``)
    dir/<T>/<S>.lease              the session's turn lease (owner, fencing token, expiry)

Names: tenants and session ids are percent-encoded from UTF-8, keeping only ``a-z 0-9 _ -``
literal (upper-case letters, ``.`` and ``~`` are encoded too), so every id maps to exactly one
name inside its folder, never ``.``/``..`` nor anything with a ``/``, the mapping reverses with
``unquote`` and two ids never collide even on a case-insensitive file system. An id whose name
would pass 200 bytes is stored as ``<sha256 of the id>.h`` and read back from the header record.

Records: every change is one appended line, a JSON object whose ``k`` says what it is::

    h      header (first line): tenant, session id, creation time, a random generation id
    b      a batch of messages [seq, role, tokens, id, created_at, body] + idempotency key;
           one line, so an append is all or nothing
    pop    the newest message was removed       clear   every message and the summary were
    r      replace: a clear and a (possibly empty) batch together, so a replace is one line
    meta   new metadata    exp   new expiry     sum     a new running summary
    w      message bodies rewritten in place, seq and id kept (``chatkeep rekey``)

Durability: a line is written with one ``os.write`` on an ``O_APPEND`` descriptor and is
acknowledged only after ``fsync``. A crash can only leave a torn *last* line (no newline),
which was never acknowledged: readers ignore it and the next writer truncates it away under
the lock before appending. Any other line that does not decode raises
:class:`~chatkeep.errors.CorruptRecord` naming the file and line; nothing is skipped. Once
popped/cleared/superseded records outweigh the live ones, the file is compacted: rewritten to a
temp file in the same folder, fsync'd, ``os.replace``-d over the original, then the folder is
fsync'd (the header gets a new generation id, so other processes notice the rewrite).

Concurrency: writes hold the session's lock file exclusively (``fcntl.flock``), reads hold it
shared; threads of one process also queue on an in-process lock. Operations over many
sessions (erase, purge, tokenizer binding) hold the folder lock. Waiting is bounded by
``timeout``: past it, :class:`~chatkeep.errors.StoreUnavailable` names the locked file.
``flock`` is reliable on local file systems only: do not share the folder over NFS/SMB.

Cost: each process caches recently used sessions with the offset it has read, and reads only
new bytes on the next call. But ``window()`` walks the whole session in memory (no running
token index), and ``sessions()`` / ``purge_expired()`` look at every file of the folder. This
backend is for prototypes; use SQLite once conversations or their number grow.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from chatkeep.errors import (
    ChatkeepError,
    CorruptRecord,
    StoreFull,
    StoreUnavailable,
    TokenizerMismatch,
)
from chatkeep.policies.window import window_from_history
from chatkeep.stores._common import (
    check_expected,
    check_summary_args,
    decode_cursor,
    encode_cursor,
    new_id,
    ts,
)
from chatkeep.stores._detach import detach_all, detach_result, detach_window
from chatkeep.stores.base import UNSET, NewRow, _Unset
from chatkeep.stores.file_maint import FileMaintenance
from chatkeep.stores.file_records import (
    FORMAT,
    _dumps,
    _Gone,
    _info,
    _State,
    decode_name,
    encode_name,
)
from chatkeep.types import (
    AppendResult,
    JSONObject,
    Lease,
    SessionInfo,
    SessionPage,
    StoredMessage,
    Summary,
    Window,
    utcnow,
)

T = TypeVar("T")
log = logging.getLogger("chatkeep.file")

META_FILE = "chatkeep.json"
FOLDER_LOCK = ".lock"
_COMPACT_MIN_DEAD = 256  # never compact for fewer dead records than this
_CACHE_SESSIONS = 256  # sessions whose parsed state a process keeps
_THREAD_STRIPES = 64
_EXPIRY_MARK = b'"k":"exp"'  # in every expiry record (rarely also in a body: harmless)


class FileBackend(FileMaintenance):
    """JSON Lines per session under ``path``; see the module docstring for the layout."""

    scheme = "file"
    ephemeral = False

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.root = Path(path)
        self.timeout = timeout
        self._cache: OrderedDict[Path, _State] = OrderedDict()
        self._cache_lock = threading.RLock()
        self._stripes = [threading.Lock() for _ in range(_THREAD_STRIPES)]
        self._folder_tlock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------
    def _run(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except ChatkeepError:
            raise
        except OSError as exc:
            raise unavailable(self.root, what, exc) from exc

    @contextmanager
    def _locked(self, lock: Path, *, exclusive: bool, create: bool = True) -> Iterator[None]:
        """Hold ``lock`` (shared or exclusive) for this process and thread, within timeout.

        A lock file may be unlinked by whoever holds it (delete, erase): after taking it we
        check that the path still names the file we locked, else start again. With
        ``create=False`` a missing lock file or folder raises :class:`_Gone`.
        """
        deadline = time.monotonic() + self.timeout
        tlock = None
        if exclusive:
            is_folder = lock.name == FOLDER_LOCK and lock.parent == self.root
            tlock = (
                self._folder_tlock
                if is_folder
                else self._stripes[hash(str(lock)) % _THREAD_STRIPES]
            )
            if not tlock.acquire(timeout=self.timeout):
                raise StoreUnavailable(
                    f"{lock} stayed locked by another thread of this process for "
                    f"{self.timeout:g}s; raise ?timeout= or retry"
                )
        try:
            while True:
                fd = self._open_lock(lock, create)
                try:
                    self._flock(fd, lock, exclusive, deadline)
                    try:
                        current = os.stat(lock)
                    except FileNotFoundError:
                        current = None
                    here = os.fstat(fd)
                    if current is not None and (current.st_dev, current.st_ino) == (
                        here.st_dev,
                        here.st_ino,
                    ):
                        yield
                        return
                    if not create:
                        raise _Gone()
                finally:
                    os.close(fd)  # closing releases the lock
        finally:
            if tlock is not None:
                tlock.release()

    def _open_lock(self, lock: Path, create: bool) -> int:
        for _ in range(100):
            try:
                if create:
                    return os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    return os.open(lock, os.O_RDWR)
                except FileNotFoundError:
                    if not lock.with_suffix(".jsonl").exists():
                        raise _Gone() from None
                    return os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:
                if not create:
                    raise _Gone() from None
                lock.parent.mkdir(exist_ok=True)  # a new tenant (or one erased meanwhile)
                _fsync_dir(lock.parent.parent)
        raise StoreUnavailable(f"cannot create {lock}: its folder keeps disappearing")

    def _flock(self, fd: int, lock: Path, exclusive: bool, deadline: float) -> None:
        mode = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
        delay = 0.0005
        while True:
            try:
                fcntl.flock(fd, mode)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"{lock} stayed locked for {self.timeout:g}s (another process is "
                        "using this session); raise ?timeout= or retry"
                    ) from exc
            time.sleep(delay * (0.5 + random.random()))  # jitter: pollers do not march
            delay = min(delay * 2, 0.005)  # short: a busy writer frees the lock only briefly

    def _tenant_dir(self, tenant: str) -> Path:
        return self.root / encode_name(tenant)

    def _paths(self, tenant: str, session_id: str) -> tuple[Path, Path]:
        stem = encode_name(session_id)
        folder = self._tenant_dir(tenant)
        return folder / f"{stem}.jsonl", folder / f"{stem}.lock"

    # -- reading a file into its state (caller holds the session's lock) ----------------------
    def _forget(self, path: Path) -> None:
        with self._cache_lock:
            self._cache.pop(path, None)

    def _load(self, path: Path) -> _State | None:
        """The session in ``path`` (the caller holds its lock), reading only new bytes.

        While the caller holds the lock the returned state does not change: other threads
        only mutate a cached state under the exclusive lock.
        """
        with self._cache_lock:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                self._cache.pop(path, None)
                return None
            try:
                state = self._load_fd(path, fd)
            except BaseException:
                self._cache.pop(path, None)  # never keep a half-applied state
                raise
            finally:
                os.close(fd)
            if state is None:
                self._cache.pop(path, None)
                return None
            self._cache[path] = state
            self._cache.move_to_end(path)
            while len(self._cache) > _CACHE_SESSIONS:
                self._cache.popitem(last=False)
            return state

    def _load_fd(self, path: Path, fd: int) -> _State | None:
        st = os.fstat(fd)
        inode = (st.st_dev, st.st_ino)
        state = self._cache.get(path)
        if state is not None and (
            state.inode != inode
            or state.offset > st.st_size
            or os.pread(fd, len(state.head), 0) != state.head
        ):
            state = None  # replaced, truncated or recreated since we read it
        if state is None:
            state = _State(inode=inode)
        if st.st_size > state.offset:
            data = _pread_all(fd, st.st_size - state.offset, state.offset)
            end = data.rfind(b"\n") + 1  # a torn last line (no newline) is not acknowledged
            pos = 0
            while pos < end:
                nl = data.index(b"\n", pos)
                line = data[pos:nl]
                try:
                    state.apply(json.loads(line))
                except Exception as exc:
                    raise CorruptRecord(
                        f"{path}, line {state.lines + 1}: unreadable record: {exc}"
                    ) from exc
                if state.lines == 0:
                    state.head = data[pos : nl + 1]
                state.lines += 1
                pos = nl + 1
            state.offset += end
        if not state.session_id:
            if state.offset == 0:
                return None  # empty, or only a torn first write: never created
            raise CorruptRecord(f"{path} has no header record")
        return state

    # -- writing -----------------------------------------------------------------------------
    def _append_lines(self, path: Path, state: _State | None, lines: list[str]) -> None:
        data = "".join(line + "\n" for line in lines).encode()
        offset = state.offset if state is not None else 0
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            if os.fstat(fd).st_size != offset:
                os.ftruncate(fd, offset)  # drop a torn tail left by a crashed writer
            rest = memoryview(data)
            while rest:  # a short write means the disk filled up: the next one says ENOSPC
                written = os.write(fd, rest)
                if written == 0:
                    raise OSError(errno.EIO, f"short write ({len(data) - len(rest)} bytes)")
                rest = rest[written:]
            os.fsync(fd)
        except BaseException:
            try:  # leave nothing unacknowledged behind
                os.ftruncate(fd, offset)
                if state is None:
                    os.unlink(path)
            except OSError:
                pass
            raise
        finally:
            os.close(fd)
        if state is None:
            _fsync_dir(path.parent)

    def _write(
        self,
        tenant: str,
        session_id: str,
        what: str,
        change: Callable[[_State | None], list[str] | None],
        finish: Callable[[_State | None], T],
    ) -> T:
        """Under the session's exclusive lock: ``change`` gives the lines to append (None:
        nothing), ``finish`` turns the resulting state into the answer."""
        path, lock = self._paths(tenant, session_id)

        def go() -> T:
            with self._locked(lock, exclusive=True):
                state = self._load(path)
                if state is not None and state.expired():
                    path.unlink()  # expired: the next write starts a new session
                    self._forget(path)
                    state = None
                created = ts(utcnow())  # before the change's own timestamps
                lines = change(state)
                if not lines:
                    return finish(state)
                if state is None:
                    head = {
                        "k": "h",
                        "tenant": tenant,
                        "sid": session_id,
                        "at": created,
                        "gen": new_id(),
                    }
                    lines = [_dumps(head), *lines]
                self._append_lines(path, state, lines)
                state = self._load(path)
                result = finish(state)
                if state is not None and state.dead > max(_COMPACT_MIN_DEAD, len(state.messages)):
                    self._compact(path, state)
                return result

        return self._run(f"{what} session {session_id!r}", go)

    def compact(self, tenant: str, session_id: str) -> None:
        """Rewrite the session's file without its dead records now, so superseded records
        (plaintext or old-key ones after ``chatkeep rekey``) leave the disk, not just the view."""
        path, lock = self._paths(tenant, session_id)

        def go() -> None:
            with self._locked(lock, exclusive=True):
                state = self._load(path)
                if state is not None and state.dead:
                    self._compact(path, state)

        self._run(f"compact session {session_id!r}", go)

    def _compact(self, path: Path, state: _State) -> None:
        """Rewrite the file without dead records. Housekeeping: the change it follows is
        already acknowledged, so a failure here is logged, not raised."""
        tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            _write_file(tmp, "".join(line + "\n" for line in state.snapshot_lines()))
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            log.warning("could not compact %s: %s", path, exc)
            tmp.unlink(missing_ok=True)
        finally:
            self._forget(path)

    def _read(self, tenant: str, session_id: str, what: str, fn: Callable[[_State | None], T]) -> T:
        """``fn`` of the live session (None if absent or expired) under its shared lock."""
        path, lock = self._paths(tenant, session_id)

        def go() -> T:
            if not path.exists():
                return fn(None)
            try:
                with self._locked(lock, exclusive=False, create=False):
                    state = self._load(path)
                    return fn(None if state is None or state.expired() else state)
            except _Gone:
                return fn(None)

        return self._run(f"{what} session {session_id!r}", go)

    def _remove_session(self, jsonl: Path) -> bool:
        """Delete a session's files (the caller holds its exclusive lock); True if its
        records file existed. The lock file goes last: waiters notice and start again."""
        stem = jsonl.name[: -len(".jsonl")]
        folder = jsonl.parent
        existed = True
        try:
            jsonl.unlink()
        except FileNotFoundError:
            existed = False
        self._forget(jsonl)
        (folder / f"{stem}.lease").unlink(missing_ok=True)
        for leftover in folder.glob(f"{_glob_escape(stem)}.*.tmp"):
            leftover.unlink(missing_ok=True)  # from a writer that crashed mid-rewrite
        (folder / f"{stem}.lock").unlink(missing_ok=True)
        return existed

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        def go() -> None:
            if not self.root.parent.is_dir():
                raise StoreUnavailable(
                    f"cannot create the file store {self.root}: its parent folder "
                    f"{self.root.parent} does not exist"
                )
            self.root.mkdir(exist_ok=True)
            os.close(os.open(self.root / FOLDER_LOCK, os.O_RDWR | os.O_CREAT, 0o644))

        self._run("opening", go)

    def close(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    def bind_tokenizer(self, name: str) -> None:
        meta = self.root / META_FILE

        def go() -> None:
            with self._locked(self.root / FOLDER_LOCK, exclusive=True):
                try:
                    text = meta.read_text(encoding="utf-8")
                except FileNotFoundError:
                    _atomic_write(meta, _dumps({"format": FORMAT, "tokenizer": name}))
                    return
                try:
                    data = json.loads(text)
                    recorded, fmt = data["tokenizer"], data.get("format", FORMAT)
                    if not isinstance(recorded, str) or not isinstance(fmt, int):
                        raise TypeError("tokenizer must be a string and format an int")
                except (ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise CorruptRecord(f"{meta} is unreadable: {exc}") from exc
                if fmt > FORMAT:
                    raise StoreUnavailable(
                        f"{self.root} was written by a newer chatkeep (format {fmt}); "
                        "upgrade chatkeep"
                    )
                if recorded != name:
                    raise TokenizerMismatch(
                        f"{self.root} holds token counts made by tokenizer {recorded!r}, not "
                        f"{name!r}; open it with tokenizer={recorded!r} or use another folder"
                    )

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
        replay: list[AppendResult] = []

        def change(state: _State | None) -> list[str] | None:
            if state is not None and idempotency_key in state.idempotency:
                first, last = state.idempotency[idempotency_key]
                msgs = tuple(state.messages[first - 1 : last])
                replay.append(AppendResult(session_id, first, last, msgs, replayed=True))
                return None
            last = state.last_seq if state is not None else 0
            check_expected(session_id, expect_last_seq, last)
            batch = ",".join(
                f"[{last + 1 + i},{_dumps(r.message.role)},{r.tokens},"
                f"{_dumps(r.msg_id or new_id())},"
                f"{_dumps(ts(r.message.created_at))},{r.body.decode()}]"
                for i, r in enumerate(rows)
            )
            key = _dumps(idempotency_key)
            return [f'{{"k":"b","m":[{batch}],"i":{key},"at":{_dumps(ts(utcnow()))}}}']

        def finish(state: _State | None) -> AppendResult:
            if replay:
                return detach_result(replay[0])
            assert state is not None
            new = tuple(state.messages[-len(rows) :])
            return detach_result(AppendResult(session_id, new[0].seq, new[-1].seq, new))

        return self._write(tenant, session_id, "appending to", change, finish)

    def read(
        self, tenant: str, session_id: str, *, after_seq: int, limit: int | None, newest: bool
    ) -> list[StoredMessage]:
        def fn(state: _State | None) -> list[StoredMessage]:
            if state is None:
                return []
            rows = state.messages  # seqs are 1..n: index i holds seq i + 1
            if limit is None:
                return rows[after_seq:]
            if newest:
                return rows[max(after_seq, len(rows) - limit) :]
            return rows[after_seq : after_seq + limit]

        return detach_all(self._read(tenant, session_id, "reading", fn))

    def window(
        self, tenant: str, session_id: str, *, budget: int, pin_system: bool, reserve: int
    ) -> Window:
        def fn(state: _State | None) -> Window:
            return window_from_history(
                state.messages if state else [],
                budget=budget,
                summary=state.summary if state else None,
                pin_system=pin_system,
                reserve=reserve,
            )

        return detach_window(self._read(tenant, session_id, "windowing", fn))

    def pop(self, tenant: str, session_id: str) -> StoredMessage | None:
        popped: list[StoredMessage] = []

        def change(state: _State | None) -> list[str] | None:
            if state is None or not state.messages:
                return None
            popped.append(state.messages[-1])
            return [_dumps({"k": "pop", "seq": state.last_seq, "at": ts(utcnow())})]

        return self._write(
            tenant, session_id, "popping from", change, lambda _: popped[0] if popped else None
        )

    def clear(self, tenant: str, session_id: str) -> int:
        count: list[int] = []

        def change(state: _State | None) -> list[str] | None:
            if state is None:
                return None
            count.append(len(state.messages))
            return [_dumps({"k": "clear", "at": ts(utcnow())})]

        return self._write(
            tenant, session_id, "clearing", change, lambda _: count[0] if count else 0
        )

    def replace(
        self,
        tenant: str,
        session_id: str,
        rows: list[NewRow],
        *,
        expect_last_seq: int | None,
    ) -> AppendResult:
        def change(state: _State | None) -> list[str] | None:
            check_expected(session_id, expect_last_seq, state.last_seq if state else 0)
            batch = ",".join(
                f"[{1 + i},{_dumps(r.message.role)},{r.tokens},"
                f"{_dumps(r.msg_id or new_id())},"
                f"{_dumps(ts(r.message.created_at))},{r.body.decode()}]"
                for i, r in enumerate(rows)
            )
            return [f'{{"k":"r","m":[{batch}],"i":null,"at":{_dumps(ts(utcnow()))}}}']

        def finish(state: _State | None) -> AppendResult:
            assert state is not None
            new = tuple(state.messages)
            return detach_result(AppendResult(session_id, 1, len(new), new))

        return self._write(tenant, session_id, "replacing", change, finish)

    def delete(self, tenant: str, session_id: str) -> bool:
        path, lock = self._paths(tenant, session_id)

        def go() -> bool:
            if not path.parent.is_dir():
                return False
            with self._locked(lock, exclusive=True):
                existed = self._remove_session(path)
            _fsync_dir(path.parent)
            return existed

        return self._run(f"deleting session {session_id!r}", go)

    def sessions(
        self, tenant: str, *, prefix: str | None, limit: int, cursor: str | None
    ) -> SessionPage:
        after = decode_cursor(cursor)

        def wanted(sid: str) -> bool:
            return (prefix is None or sid.startswith(prefix)) and (after is None or sid > after)

        def go() -> SessionPage:
            folder = self._tenant_dir(tenant)
            try:
                names = [n[: -len(".jsonl")] for n in os.listdir(folder) if n.endswith(".jsonl")]
            except FileNotFoundError:
                return SessionPage((), None)
            candidates: list[tuple[str, Path]] = []
            for stem in names:
                path = folder / f"{stem}.jsonl"
                sid = decode_name(stem)
                if sid is None:  # a hash-based name: the id is in the header
                    info = self._info_at(tenant, path)
                    sid = info.session_id if info is not None else None
                if sid is not None and wanted(sid):
                    candidates.append((sid, path))
            candidates.sort()
            items: list[SessionInfo] = []
            for _, path in candidates:
                info = self._info_at(tenant, path)
                if info is not None and wanted(info.session_id):
                    items.append(info)
                    if len(items) > limit:
                        break
            nxt = encode_cursor(items[limit - 1].session_id) if len(items) > limit else None
            return SessionPage(tuple(items[:limit]), nxt)

        return self._run("listing sessions", go)

    def _info_at(self, tenant: str, path: Path) -> SessionInfo | None:
        try:
            with self._locked(path.with_suffix(".lock"), exclusive=False, create=False):
                state = self._load(path)
                if state is None or state.expired() or state.tenant != tenant:
                    return None
                return _info(state)
        except _Gone:
            return None

    def info(self, tenant: str, session_id: str) -> SessionInfo | None:
        return self._read(
            tenant, session_id, "reading", lambda s: _info(s) if s is not None else None
        )

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
            if not isinstance(expires_at, _Unset):
                exp = ts(expires_at) if expires_at is not None else None
                lines.append(_dumps({"k": "exp", "expires_at": exp, "at": at}))
            if metadata is not None or not lines:  # with nothing to change: just touch it
                meta = metadata if metadata is not None else (state.metadata if state else {})
                lines.append(_dumps({"k": "meta", "metadata": meta, "at": at}))
            return lines

        def finish(state: _State | None) -> SessionInfo:
            assert state is not None
            return _info(state)

        return self._write(tenant, session_id, "updating", change, finish)

    def get_summary(self, tenant: str, session_id: str) -> Summary | None:
        return self._read(
            tenant, session_id, "reading", lambda s: s.summary if s is not None else None
        )

    def put_summary(
        self, tenant: str, session_id: str, text: str, covers_through_seq: int, tokens: int
    ) -> Summary:
        def change(state: _State | None) -> list[str] | None:
            check_summary_args(session_id, covers_through_seq, state.last_seq if state else 0)
            rec = {"text": text, "covers": covers_through_seq, "tokens": tokens}
            return [_dumps({"k": "sum", **rec, "at": ts(utcnow())})]

        def finish(state: _State | None) -> Summary:
            assert state is not None and state.summary is not None
            return state.summary

        return self._write(tenant, session_id, "summarising", change, finish)

    def _session_stems(self, folder: Path) -> list[str]:
        """The encoded name of every session with any file in ``folder``."""
        stems = set()
        for name in os.listdir(folder):
            head = name[:66]
            hashed = len(head) == 66 and head.endswith(".h") and name[66:67] == "."
            stems.add(head if hashed else name.split(".", 1)[0])
        stems.discard("")
        return sorted(stems)

    def purge_expired(self, now: datetime) -> int:
        def go() -> int:
            removed = 0
            with self._locked(self.root / FOLDER_LOCK, exclusive=True):
                for folder in self.root.iterdir():
                    if not folder.is_dir():
                        continue
                    for path in folder.glob("*.jsonl"):
                        try:
                            if _EXPIRY_MARK not in path.read_bytes():
                                continue  # never had an expiry: cannot be expired
                        except FileNotFoundError:
                            continue
                        with self._locked(path.with_suffix(".lock"), exclusive=True):
                            try:
                                state = self._load(path)
                            except CorruptRecord as exc:  # one bad file must not stop purging
                                log.warning("purge skipped a session it cannot read: %s", exc)
                                continue
                            if state is None or state.expires_at is None:
                                continue
                            if state.expires_at <= now and self._remove_session(path):
                                removed += 1
                    _fsync_dir(folder)
            return removed

        return self._run("purging expired sessions", go)

    def erase(self, tenant: str) -> int:
        folder = self._tenant_dir(tenant)

        def go() -> int:
            removed = 0
            with self._locked(self.root / FOLDER_LOCK, exclusive=True):
                if not folder.is_dir():
                    return 0
                for stem in self._session_stems(folder):
                    path = folder / f"{stem}.jsonl"
                    with self._locked(folder / f"{stem}.lock", exclusive=True):
                        removed += self._remove_session(path)
                try:
                    folder.rmdir()
                except OSError:
                    pass  # a writer started a new session meanwhile: it stays
                _fsync_dir(self.root)
            return removed

        return self._run(f"erasing tenant {tenant!r}", go)

    def acquire_lease(self, tenant: str, session_id: str, owner: str, ttl: float) -> Lease | None:
        path, lock = self._paths(tenant, session_id)
        lease_path = path.with_suffix(".lease")

        def go() -> Lease | None:
            with self._locked(lock, exclusive=True):
                now = time.time()
                row = _read_lease(lease_path)
                if row is not None and row["expires"] > now and row["owner"] != owner:
                    return None
                token = (row["token"] if row is not None else 0) + 1
                expires = now + ttl
                record = {"owner": owner, "token": token, "expires": expires}
                _atomic_write(lease_path, _dumps(record), sync=False)
                return Lease(session_id, owner, token, expires)

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

        return self._run(f"releasing the lease of session {session_id!r}", go)


def _read_lease(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise CorruptRecord(f"{path} is unreadable: {exc}") from exc
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("owner"), str)
        or type(data.get("token")) is not int
        or not isinstance(data.get("expires"), int | float)
    ):
        raise CorruptRecord(f"{path} is not a lease record: {data!r}")
    return data


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    chunks = []
    while size > 0:
        chunk = os.pread(fd, size, offset)
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def unavailable(root: Path, what: str, exc: OSError) -> StoreUnavailable:
    """The chatkeep error for an OS error: :class:`StoreFull` when the disk is full (the
    writer truncated its partial line away, so nothing of it is stored), a message saying so
    on a read-only file system, else :class:`StoreUnavailable`."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StoreFull(
            f"file store {root}: {what} failed: the disk is full ({exc.strerror}); nothing of "
            "this write was stored; free some space and retry"
        )
    if exc.errno == errno.EROFS:
        return StoreUnavailable(
            f"file store {root}: {what} failed: the file system is read-only; nothing was written"
        )
    return StoreUnavailable(f"file store {root}: {what} failed: {exc}")


def _write_file(path: Path, text: str, *, sync: bool = True) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
        if sync:
            f.flush()
            os.fsync(f.fileno())


def _atomic_write(path: Path, text: str, *, sync: bool = True) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        _write_file(tmp, text, sync=sync)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if sync:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return  # removed meanwhile (an erase): nothing left to make durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
