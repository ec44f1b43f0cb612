"""gunicorn's worker for Roster: the errors gunicorn answers itself, in the protocol's format.

gunicorn refuses some requests before any application sees them: a request line longer than
``limit_request_line`` (414), too many or too large header fields (431), a malformed request
line or header, a bad ``Content-Length`` (400), an unsupported ``Transfer-Encoding`` (501);
and, refused here (:func:`header_problem`), an HTTP/1.1 request without ``Host`` or with two
``Authorization`` fields (400).
Its answer is an HTML page, which neither a SCIM client (RFC 7644 §3.12) nor an API client
(RFC 9457) can read. :class:`RosterWorker` (gunicorn's ``gthread`` worker otherwise) answers
them as a SCIM Error, or as a problem document under ``/api/``, or as OAuth's error JSON
(RFC 6749 §5.2) at the OAuth endpoints (``/oauth/``, the OpenID Provider's token,
introspection, revocation, userinfo, JWKS and discovery: their clients are OAuth libraries);
elsewhere under ``/sso/``, where the client is a browser, gunicorn's page stays. A request
that failed in its headers was never kept, but its request line was read: the path is taken
from the request gunicorn was building (:func:`_path_of`). When gunicorn could not read the
whole request line (the 414 case) the path is the one its first bytes name; with none, the
answer is a SCIM Error, since the long requests Roster is sent are SCIM filters.

gunicorn writes these answers with ``gunicorn.util.write_error``, looked up when called;
this module replaces it with :func:`_write_error`, which does what gunicorn did for any
error outside ``RosterWorker.handle_error``.

A request must also arrive in time. gunicorn's ``gthread`` waits 5 s for a connection's first
byte and then reads the rest on a blocking socket with no timeout: a client that sends half a
header line, or a Content-Length it never delivers, holds a request thread for as long as it
keeps the connection open (a SQLite deployment has two). Each request's reads therefore share
one deadline, ``server.read_timeout`` seconds from the start of the request
(:class:`_TimedSocket`); past it the read fails with :class:`RequestTimeout`, gunicorn closes
the connection (RFC 9110 §15.5.9 lets a server close an idle request without a 408), and a body
the application was reading is answered ``408`` in the protocol's format.
"""

from __future__ import annotations

import functools
import json
import re
import socket
import sys
import threading
import time
from typing import Any

from gunicorn import util
from gunicorn.arbiter import Arbiter
from gunicorn.http.errors import InvalidHeader, NoMoreData
from gunicorn.http.message import Message
from gunicorn.workers.gthread import ThreadWorker

from app.api.errors import PROBLEM_MEDIA_TYPE, problem_type
from app.observability import REQUEST_ID_HEADER, bind_request_id, request_id_for
from app.scim.errors import ERROR_SCHEMA, SCIM_MEDIA_TYPE
from app.settings import SettingsError
from app.sso.views import OAUTH_JSON_PATHS

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
    if path is not None and path.startswith(OAUTH_JSON_PATHS):
        error = {"error": "invalid_request" if status < 500 else "server_error",
                 "error_description": detail}
        return json.dumps(error).encode(), "application/json"
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
    # Answers to credentialed protocols, which no cache should keep (the API's and OAuth's
    # own errors say so too); a 414 would otherwise be heuristically cacheable (RFC 9111
    # §4.2.2).
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: {media_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = _write_error


def _path_of(req: Any, exc: BaseException) -> str | None:
    """The path of the request an error is about: gunicorn's request, or the one it was
    building when its headers failed (431, a bad header), found in the error's traceback
    (the request's ``__init__`` parsed the request line, then raised); for a request line
    too long to parse (414), the path its first bytes name (:func:`_line_path`)."""
    known = req if req is not None else getattr(exc, "req", None)
    path = getattr(known, "path", None)
    tb = exc.__traceback__
    while path is None and tb is not None:
        building = tb.tb_frame.f_locals.get("self")
        if isinstance(building, Message):
            path = getattr(building, "path", None) or _line_path(tb.tb_frame.f_locals)
        tb = tb.tb_next
    return path if isinstance(path, str) else None


# The start of a request line in origin-form (RFC 9112 §3): a method token, a space, the path,
# up to its query, the space, or a byte no request line may hold (a raw non-ASCII one: the
# line is invalid, but its path still names the protocol to answer in).
_LINE_START = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,20} (/[\x21-\x7e]*?)"
                         rb"(?=[?#]|[^\x21-\x7e]|\Z)")


def _line_path(frame: dict[str, Any]) -> str | None:
    """The path at the start of the request line gunicorn was reading (its buffer, in the
    parsing frame's locals), when the line was too long to finish: a long GET to /api/ or
    an OAuth endpoint is then answered in that protocol's format, not as a SCIM Error."""
    for name in ("data", "buf"):
        raw = frame.get(name)
        if isinstance(raw, bytes | bytearray):
            found = _LINE_START.match(bytes(raw[:4096]).lstrip(b"\r\n"))
            if found:
                return found.group(1).decode("latin-1")
    return None


@functools.cache
def read_timeout() -> float:
    """``server.read_timeout`` (seconds) from Roster's settings, read once per process;
    settings that do not validate give 30 (the app then refuses to load and says why)."""
    from app.settings import SettingsError, load_settings

    try:
        return float(load_settings()["server"]["read_timeout"])
    except SettingsError:
        return 30.0


class RequestTimeout(NoMoreData):
    """The request did not arrive within ``server.read_timeout`` (RFC 9110 §15.5.9).

    A ``NoMoreData`` to gunicorn, which then closes the connection as for a client that went
    away; ``timed_out`` tells the application's body reader (app/json_input.py) to answer 408.
    """

    timed_out = True


class _TimedSocket(socket.socket):
    """A client socket whose reads share one deadline per request (see the module doc).

    gunicorn switches the socket between non-blocking (in its poller) and blocking (in a
    request thread). Blocking stays blocking (a response to a slow reader is sent as gunicorn
    sends it); only each read waits at most until the request's deadline.
    """

    deadline = float("inf")
    limit = 30.0

    @classmethod
    def adopt(cls, sock: socket.socket, limit: float) -> _TimedSocket:
        """The same connection as a _TimedSocket (``sock`` is detached, not closed)."""
        timed = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        timed.setblocking(False)  # as gunicorn left it
        timed.limit = limit
        return timed

    def start(self) -> None:
        """A new request begins on this connection: its reads have ``limit`` seconds."""
        self.deadline = time.monotonic() + self.limit

    def _late(self) -> RequestTimeout:
        return RequestTimeout(f"the request did not arrive within {self.limit:g} s")

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        """One read, failing with RequestTimeout at the deadline."""
        remaining = self.deadline - time.monotonic()
        current = self.gettimeout()
        if remaining <= 0 and current != 0.0:
            raise self._late()
        # A blocking read waits until the deadline; a read with gunicorn's own timeout (its
        # drain of an unread body) until the earlier of the two.
        narrow = current is None or (current > 0 and remaining < current)
        if narrow:
            self.settimeout(remaining)
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            raise self._late() from None
        finally:
            if narrow:
                self.settimeout(current)


class MisplacedHeader(InvalidHeader):
    """A request whose ``Host`` or ``Authorization`` is missing or repeated where HTTP
    forbids it; gunicorn answers it 400 (an ``InvalidHeader``), in the protocol's format."""

    def __init__(self, detail: str, req: Any) -> None:
        super().__init__(detail, req)

    def __str__(self) -> str:
        return str(self.hdr)


# Host = uri-host [ ":" port ] (RFC 9112 §3.2, RFC 3986 §3.2.2-3): an IP literal or a
# reg-name (unreserved, pct-encoded, sub-delims); empty when the target has no authority.
_HOST = re.compile(r"(?:\[[0-9A-Fa-f:.vV]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")


def header_problem(version: tuple[int, int], headers: list[tuple[str, str]]) -> str | None:
    """Why a request's header section must be refused with 400, if it must: an HTTP/1.1
    request without ``Host``, or with one that is no host (RFC 9112 §3.2: "A server MUST
    respond with a 400"; gunicorn refuses two, not these), or two ``Authorization`` fields
    (RFC 9110 §5.3: it is no list, so two cannot be combined; they reached the app joined by
    a comma, a token that was then refused as invalid: a 401 that named the wrong fault)."""
    names = [name for name, _value in headers]
    if version >= (1, 1) and "HOST" not in names:
        return "an HTTP/1.1 request must carry a Host header (RFC 9112 section 3.2)"
    host = next((value for name, value in headers if name == "HOST"), "")
    if not _HOST.fullmatch(host):
        return "the Host header is not a host and port (RFC 9112 section 3.2, RFC 3986 3.2.2)"
    if names.count("AUTHORIZATION") > 1:
        return ("the Authorization header is given more than once; send one credential "
                "(RFC 9110 section 5.3)")
    return None


class RosterWorker(ThreadWorker):
    """gunicorn's ``gthread`` worker; its own error answers follow :func:`error_document`,
    and a request's reads have ``server.read_timeout`` seconds (:class:`_TimedSocket`)."""

    def load_wsgi(self) -> None:
        """Build the app; a configuration error stops the whole server.

        ``SettingsError`` is a ``SystemExit``, which gunicorn lets through: the worker exited
        with status 1 and the master booted another, forever, with the port open and the
        requests hanging. Exiting with gunicorn's ``WORKER_BOOT_ERROR`` (3) makes the master
        halt with that status, after the problems were logged.
        """
        try:
            super().load_wsgi()
        except SettingsError as exc:
            for problem in exc.problems:
                self.log.error("roster: configuration error: %s", problem)
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def handle(self, conn: Any) -> Any:
        """Serve one request of ``conn`` (gunicorn's), its reads under one deadline."""
        if type(conn.sock) is socket.socket:  # a new plain connection (TLS wraps it later)
            conn.sock = _TimedSocket.adopt(conn.sock, read_timeout())
        if isinstance(conn.sock, _TimedSocket):
            conn.sock.start()
        try:
            return super().handle(conn)
        finally:
            bind_request_id(None)

    def handle_request(self, req: Any, conn: Any) -> Any:
        """gunicorn's handling of one parsed request, its request id chosen first (the
        client's ``X-Request-ID`` when well formed): gunicorn's own lines about the request
        (its DEBUG ``GET /path``, an error while streaming the body) carry the id the app
        uses, not null."""
        wanted = REQUEST_ID_HEADER.upper()
        incoming = next((value for name, value in req.headers if name == wanted), None)
        bind_request_id(request_id_for(incoming))  # until handle() is done with it
        if (problem := header_problem(req.version, req.headers)) is not None:
            raise MisplacedHeader(problem, req)
        return super().handle_request(req, conn)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """gunicorn's handling (status, log line), answered in the request's protocol."""
        _answering.path = _path_of(req, exc)
        try:
            super().handle_error(req, client, addr, exc)
        finally:
            del _answering.path
