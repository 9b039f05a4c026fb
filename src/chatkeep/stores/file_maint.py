"""The ``file://`` backend's maintenance primitives (``chatkeep rekey``), kept apart from the
hot paths in :mod:`chatkeep.stores.file`.

A rewrite is one ``w`` record (``[[seq, id, body], ...]``) appended under the session's lock,
so it is all or nothing like every other record; ``compact`` folds it into ordinary batches.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatkeep.stores._common import rewrite_conflict, ts
from chatkeep.stores.base import Rewrite
from chatkeep.stores.file_records import _dumps, _State, decode_name
from chatkeep.types import utcnow


class FileMaintenance:
    """Mixed into :class:`~chatkeep.stores.file.FileBackend`."""

    root: Path
    _write: Callable[..., Any]
    _run: Callable[..., Any]

    def rewrite_bodies(self, tenant: str, session_id: str, rows: list[Rewrite]) -> None:
        def change(state: _State | None) -> list[str] | None:
            for seq, msg_id, _ in rows:
                if state is None or not 0 < seq <= len(state.messages):
                    raise rewrite_conflict(session_id, seq)
                if state.messages[seq - 1].id != msg_id:
                    raise rewrite_conflict(session_id, seq)
            if not rows:
                return None
            batch = ",".join(f"[{seq},{_dumps(i)},{body.decode()}]" for seq, i, body in rows)
            return [f'{{"k":"w","m":[{batch}],"at":{_dumps(ts(utcnow()))}}}']

        self._write(tenant, session_id, "rewriting", change, lambda _: None)

    def tenants(self) -> list[str]:
        def go() -> list[str]:
            found = set()
            try:
                folders = [e for e in os.scandir(self.root) if e.is_dir()]
            except FileNotFoundError:
                return []
            for entry in folders:
                files = [n for n in os.listdir(entry.path) if n.endswith(".jsonl")]
                if not files:
                    continue
                tenant = decode_name(entry.name)
                if tenant is None:  # a hash-based name: the tenant is in a session's header
                    for name in files:
                        tenant = _header_tenant(Path(entry.path) / name)
                        if tenant is not None:
                            break
                if tenant is not None:
                    found.add(tenant)
            return sorted(found)

        return self._run("listing tenants", go)  # type: ignore[no-any-return]


def _header_tenant(path: Path) -> str | None:
    """The tenant named in a session file's header."""
    try:
        with open(path, encoding="utf-8") as f:
            rec = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    tenant = rec.get("tenant") if isinstance(rec, dict) and rec.get("k") == "h" else None
    return tenant if isinstance(tenant, str) else None
