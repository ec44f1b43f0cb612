"""gunicorn's worker for Roster: the errors gunicorn answers itself, in the protocol's format.

gunicorn refuses some requests before any application sees them: a request line longer than
``limit_request_line`` (414), too many or too large header fields (431), a malformed request
line or header, a bad ``Content-Length`` (400), an unsupported ``Transfer-Encoding`` (501).
Its answer is an HTML page, which neither a SCIM client (RFC 7644 §3.12) nor an API client
(RFC 9457) can read. :class:`RosterWorker` (gunicorn's ``gthread`` worker otherwise) answers
them as a SCIM Error, or as a problem document under ``/api/``; under ``/sso/``, where the
client is a browser, gunicorn's page stays. When gunicorn could not read the request line
(the 414 case), or failed in the headers before it kept the request, the path is unknown:
that answer is a SCIM Error, since the long requests Roster is sent are SCIM filters.

gunicorn writes these answers with ``gunicorn.util.write_error``, looked up when called;
this module replaces it with :func:`_write_error`, which does what gunicorn did for any
error outside ``RosterWorker.handle_error``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from gunicorn import util
from gunicorn.workers.gthread import ThreadWorker

from app.api.errors import PROBLEM_MEDIA_TYPE, problem_type
from app.scim.errors import ERROR_SCHEMA, SCIM_MEDIA_TYPE

# The path of the request whose error RosterWorker.handle_error is answering on this thread
# (None: gunicorn did not get that far); absent outside handle_error.
_answering = threading.local()
_gunicorn_write_error = util.write_error
_POST_SEARCH = (" A SCIM query this long can be sent in the body of POST .search "
                "(RFC 7644 §3.4.3).")


def error_document(status: int, reason: str, detail: str,
                   path: str | None) -> tuple[bytes, str] | None:
    """The body and media type of gunicorn's error ``status`` for a request to ``path``;
    None for gunicorn's own HTML page (browser paths)."""
    detail = detail or reason
    if path is not None and path.startswith("/sso/"):
        return None
    if path is not None and path.startswith("/api/"):
        problem = {"type": problem_type(status), "title": reason, "status": status,
                   "detail": detail, "instance": path}
        return json.dumps(problem).encode(), PROBLEM_MEDIA_TYPE
    if status == 414:
        detail += "." + _POST_SEARCH
    error = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    return json.dumps(error).encode(), SCIM_MEDIA_TYPE


def _write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    if not hasattr(_answering, "path"):
        _gunicorn_write_error(sock, status_int, reason, mesg)
        return
    document = error_document(status_int, reason, mesg, _answering.path)
    if document is None:
        _gunicorn_write_error(sock, status_int, reason, mesg)
        return
    body, media_type = document
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: {media_type}\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = _write_error


class RosterWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker; its own error answers follow :func:`error_document`."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's handling (status, log line), answered in the request's protocol."""
        known = req if req is not None else getattr(exc, "req", None)
        _answering.path = getattr(known, "path", None)
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            del _answering.path
