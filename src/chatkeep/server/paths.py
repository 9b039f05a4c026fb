"""Session ids in URL paths: a percent-encoded ``/`` (``%2F``) stays inside the id.

Ids may contain ``/`` (``user:42/thread:7``), and ``/v1/sessions/{id}`` routes match the id
greedily, so ``/v1/sessions/a/b/messages`` reads the messages of ``a/b``. The one ambiguous case
is an id that itself ends in ``/messages``, ``/window`` or ``/summary`` on the info and delete
routes: ``GET /v1/sessions/x/messages`` reads the messages of ``x``. Percent-encode the id's
slashes and it is unambiguous: ``GET /v1/sessions/x%2Fmessages`` is the info of ``x/messages``.

ASGI servers decode ``%2F`` in ``scope["path"]``, which loses the difference, so
:func:`keep_encoded_slashes` rebuilds the path of ``/v1/sessions/...`` requests from
``raw_path`` with ``%`` and ``/`` inside each segment re-encoded, and the routes' ``sid``
convertor decodes the id.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import Scope

_PREFIX = b"/v1/sessions/"


def _encode(text: str) -> str:
    return text.replace("%", "%25").replace("/", "%2F")


class SessionIdConvertor(Convertor[str]):
    regex = ".*"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return _encode(value)


register_url_convertor("sid", SessionIdConvertor())


def keep_encoded_slashes(scope: Scope) -> None:
    """Rewrite ``scope["path"]`` so an encoded ``/`` in a session id is not a separator."""
    raw = scope.get("raw_path")
    if not raw or not raw.startswith(_PREFIX) or b"%" not in raw or scope.get("root_path"):
        return
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return
    scope["path"] = "/".join(_encode(unquote(part)) for part in text.split("/"))
