"""The chatkeep server: REST API, chat endpoint and web inspector (``chatkeep serve``).

Needs the ``server`` extra (``pip install 'chatkeep[server]'``)::

    from chatkeep.server import Settings, create_app

    app = create_app(Settings(store_url="sqlite:///chat.db"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatkeep.errors import MissingDependency

if TYPE_CHECKING:
    from chatkeep.server.app import create_app
    from chatkeep.server.settings import Settings

__all__ = ["Settings", "create_app"]


def _require() -> None:
    """Raise MissingDependency unless the app's dependencies are installed (uvicorn, which
    only ``chatkeep serve`` needs, is not imported here: importing it changes how chatkeep
    judges in-process stores)."""
    try:
        import fastapi  # noqa: F401
        import prometheus_client  # noqa: F401
    except ImportError as exc:
        raise MissingDependency(
            f"the chatkeep server needs {exc.name}: pip install 'chatkeep[server]'"
        ) from exc


def __getattr__(name: str) -> Any:
    if name == "create_app":
        _require()
        from chatkeep.server.app import create_app

        return create_app
    if name == "Settings":
        from chatkeep.server.settings import Settings

        return Settings
    raise AttributeError(f"module 'chatkeep.server' has no attribute {name!r}")
