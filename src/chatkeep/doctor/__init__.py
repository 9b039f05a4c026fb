"""``chatkeep doctor``: find the lifecycle mistakes that make chat memory forget.

Static rules read Python code with :mod:`ast` (user code is never imported or run) plus
Procfiles, Dockerfiles, compose files, Makefiles, pyproject.toml and shell scripts; the runtime
:func:`watch` and :class:`WatchMiddleware` watch a running app. Only the standard library is
imported here.
"""

from chatkeep.doctor.diagnostic import RULES, Diagnostic, Rule
from chatkeep.doctor.runner import Result, check_paths, check_source
from chatkeep.doctor.watcher import (
    HistoryShrankWarning,
    MemoryRecreatedWarning,
    MemoryWatchWarning,
    WatchMiddleware,
    awatch,
    watch,
)

__all__ = [
    "RULES",
    "Diagnostic",
    "HistoryShrankWarning",
    "MemoryRecreatedWarning",
    "MemoryWatchWarning",
    "Result",
    "Rule",
    "WatchMiddleware",
    "awatch",
    "check_paths",
    "check_source",
    "watch",
]
