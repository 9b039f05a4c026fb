"""Is this process serving an app (a web server, its reloader or one of its workers)?

``memory://`` warns when it is opened in such a process: a reload, a second worker or a restart
loses everything. Merely *importing* a server package proves nothing (the OpenAI Agents SDK
imports uvicorn; a library may import Flask), so this looks for evidence that one is running:

- the process was started by a server's command line (``uvicorn app:app``, ``python -m
  gunicorn``, ``streamlit run``, ``flask run``, ``manage.py runserver``);
- a server's serving loop is on some thread's call stack (``uvicorn.run(app)`` from a script,
  a reloader's or multi-worker supervisor's child, a server started in a thread);
- Streamlit's runtime exists (``streamlit.runtime.exists()``).

Nothing here imports a server package: each check runs only if that package is already in
``sys.modules``. It runs once per ``memory://`` store opened, never on a hot path.
"""

from __future__ import annotations

import os
import sys
from types import FrameType

# server package -> command names that start it (argv[0] or ``python -m <name>``)
_SERVERS: dict[str, tuple[str, ...]] = {
    "uvicorn": ("uvicorn",),
    "gunicorn": ("gunicorn",),
    "hypercorn": ("hypercorn",),
    "streamlit": ("streamlit",),
    "flask": ("flask",),
    "daphne": ("daphne",),
    "granian": ("granian",),
    "django": ("django-admin",),
}
# source files whose functions are on the stack only while a server runs
_SERVING_FILES: dict[str, tuple[str, ...]] = {
    "uvicorn": ("uvicorn/server.py", "uvicorn/supervisors/"),
    "gunicorn": ("gunicorn/arbiter.py", "gunicorn/workers/"),
    "hypercorn": ("hypercorn/asyncio/run.py", "hypercorn/trio/run.py", "hypercorn/run.py"),
    "streamlit": ("streamlit/web/bootstrap.py", "streamlit/runtime/scriptrunner"),
    "flask": ("werkzeug/serving.py",),
    "django": ("django/core/management/commands/runserver.py",),
    "daphne": ("daphne/server.py",),
    "granian": ("granian/server",),
}


def _started_by() -> str | None:
    """The server whose command line started this process, if any."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    module = (spec.name if spec is not None else "").split(".")[0]
    argv0 = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    argv0 = argv0.removesuffix(".exe")
    for server, commands in _SERVERS.items():
        if module == server or argv0 in commands:
            return server
    if argv0 == "__main__.py" and sys.argv[0]:
        parent = os.path.basename(os.path.dirname(sys.argv[0]))
        if parent in _SERVERS:
            return parent
    if "runserver" in sys.argv[1:2]:  # manage.py runserver
        return "django"
    return None


def _on_a_stack(imported: list[str]) -> str | None:
    """The imported server whose serving code is on some thread's call stack, if any."""
    wanted = {
        server: tuple(p.replace("/", os.sep) for p in _SERVING_FILES[server])
        for server in imported
        if server in _SERVING_FILES
    }
    if not wanted:
        return None
    for top in sys._current_frames().values():
        frame: FrameType | None = top
        while frame is not None:
            filename = frame.f_code.co_filename
            for server, parts in wanted.items():
                if any(p in filename for p in parts):
                    return server
            frame = frame.f_back
    return None


def _streamlit_runtime() -> bool:
    runtime = sys.modules.get("streamlit.runtime")
    exists = getattr(runtime, "exists", None)
    return bool(exists()) if callable(exists) else False


def serving_under() -> str | None:
    """The name of the server this process is running under, or ``None``."""
    imported = [s for s in _SERVERS if s in sys.modules]
    if not imported:
        return None  # no server package imported: nothing can be running
    if "streamlit" in imported and _streamlit_runtime():
        return "streamlit"
    return _started_by() or _on_a_stack(imported)
