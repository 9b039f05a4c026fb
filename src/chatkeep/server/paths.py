"""Session ids in URL paths: a percent-encoded ``/`` (``%2F``) stays inside the id.

Ids may contain ``/`` (``user:42/thread:7``), and ``/v1/sessions/{id}`` routes match the id
greedily, so ``/v1/sessions/a/b/messages`` reads the messages of ``a/b``. The one ambiguous case
is an id that itself ends in ``/messages``, ``/window`` or ``/summary`` on the info and delete
routes: ``GET /v1/sessions/x/messages`` reads the messages of ``x``. Percent-encode the id's
slashes and it is unambiguous: ``GET /v1/sessions/x%2Fmessages`` is the info of ``x/messages``.

ASGI servers decode ``%2F`` in ``scope["path"]``, which loses the difference, so
:func:`keep_encoded_slashes` rebuilds the path of ``/v1/sessions/...`` requests from
``raw_path`` with ``%`` and ``/`` inside each segment re-encoded, and the routes' ``sid``
convertor decodes the id. Percent-escapes that do not decode as UTF-8 (``%FF``, an encoded lone
surrogate) are refused with a 400 rather than turned into U+FFFD, which would store the message
under an id the client never sent.
"""

from __future__ import annotations

from urllib.parse import unquote

from starlette.convertors import Convertor, register_url_convertor
from starlette.types import Scope

from chatkeep.errors import InvalidInput


def _encode(text: str) -> str:
    return text.replace("%", "%25").replace("/", "%2F")


class SessionIdConvertor(Convertor[str]):
    regex = r"[\s\S]*"  # newlines too, so ``%0A`` gets the session-id error, not a 404

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return _encode(value)


register_url_convertor("sid", SessionIdConvertor())


class PathNotUTF8(InvalidInput):
    """A percent-encoded path segment that is not UTF-8: refused, never stored as U+FFFD."""


def _strict_unquote(part: str) -> str:
    try:
        return unquote(part, errors="strict")
    except UnicodeDecodeError:
        raise PathNotUTF8(
            f"the URL path segment {part!r} is not UTF-8 once percent-decoded; "
            "percent-encode the UTF-8 bytes of the session id"
        ) from None


def keep_encoded_slashes(scope: Scope) -> None:
    """Rewrite ``scope["path"]`` of ``/v1/sessions/...`` requests into the form the ``sid``
    convertor decodes: ``%`` and an encoded ``/`` inside a segment stay encoded."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if not (path.startswith("/v1/sessions/") or path.startswith(root + "/v1/sessions/")):
        return
    raw = scope.get("raw_path")
    if "%" not in path and (not raw or b"%" not in raw):
        return  # nothing encoded: the path is already in the convertor's form
    try:
        text = raw.decode("ascii") if raw else None
    except UnicodeDecodeError:
        text = None
    if text is not None and unquote(text) == path:
        scope["path"] = "/".join(_encode(_strict_unquote(part)) for part in text.split("/"))
    else:  # no usable raw form: keep the decoded slashes as separators, protect "%"
        scope["path"] = path.replace("%", "%25")
