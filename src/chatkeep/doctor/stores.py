"""``chatkeep doctor --store URL``: is this store durable and reachable? (CK201, CK202)

Opens the backend only (never :meth:`chatkeep.Store.open`, which purges expired sessions), so
nothing is written: a missing SQLite file or ``file://`` directory is reported, not created.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from chatkeep.doctor.diagnostic import Diagnostic
from chatkeep.errors import ChatkeepError
from chatkeep.stores import make_backend, redact


def _missing_local_path(backend: object) -> Path | None:
    """The SQLite file or ``file://`` directory that does not exist (opening would create it)."""
    path = getattr(backend, "path", None)  # sqlite://
    if isinstance(path, Path) and str(path) != ":memory:" and not path.exists():
        return path
    root = getattr(backend, "root", None)  # file://
    if isinstance(root, Path) and not root.is_dir():
        return root
    return None


def check_store(url: str) -> Diagnostic | None:
    """A CK201 / CK202 finding for the store at ``url``, or ``None`` when it is durable."""
    shown = redact(url)

    def finding(code: str, message: str) -> Diagnostic:
        from chatkeep.doctor.diagnostic import RULES

        return Diagnostic(shown, 1, 1, code, message, RULES[code].hint)

    try:
        backend = make_backend(url)
    except ChatkeepError as exc:
        return finding("CK202", f"store unreachable: {exc}")
    missing = _missing_local_path(backend)
    if missing is not None:
        return finding("CK202", f"store unreachable: {missing} does not exist")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a DurabilityWarning is reported as CK201 below
            backend.open()
    except ChatkeepError as exc:
        return finding("CK202", f"store unreachable: {exc}")
    try:
        if backend.ephemeral:
            return finding(
                "CK201",
                f"store is not durable: {backend.scheme}:// keeps conversations in one process; "
                "a restart, reload or second worker loses them",
            )
        if getattr(backend, "persistent", True) is False:
            return finding(
                "CK201",
                "store is not durable: the server has neither AOF (appendonly) nor RDB "
                "snapshots (save) enabled, so a restart loses every conversation",
            )
        return None
    finally:
        backend.close()
