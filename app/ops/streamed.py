"""A streamed response (the audit export) whose body fails after its status was sent.

The status line and headers of a streamed response go out before its first row is read, so
the access line and the metrics sample, written when the response was made, said 200 for an
export that a database error cut off half-way; the only other trace was gunicorn's "Error
handling request" traceback, without the request id. Over HTTP/1.0 (no chunked encoding) the
client got a body that ended after a complete row: a silently truncated export that parsed
as whole.

:class:`TrackedBody` wraps such a body: the access line and the sample are written when the
body ends. One that fails is logged once (ERROR, the request id, the traceback), counted with
the status label ``aborted`` and its access line says ``"aborted": true``; the body ends with
a line that says so and is no record (:data:`ABORTED_MARKER`: not JSON, so a JSON Lines
reader fails on it; in CSV a one-field row whose quote never closes, which a strict reader
refuses), and the chunked encoding is left without its last chunk (RFC 9112 §7.1), so an
HTTP/1.1 client fails on the transfer itself (curl exits 18, Python's http.client raises
IncompleteRead).

A body the server closes before its end without a failure of its own is a client that went
away mid-body (the write to its reset connection failed; gunicorn then closes the body):
counted with the status label ``disconnected``, its access line says ``"disconnected":
true``. It was counted and logged as a complete 200. A body closed before it was started (a
HEAD) is its status, as before.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

# How a streamed body ended: whole, failed on the server (``aborted``), or closed before its
# end because the client went away (``disconnected``).
Ending = Literal["whole", "aborted", "disconnected"]

log = logging.getLogger("roster.stream")

# The last line of a body that failed: no JSON value (RFC 8259), and in CSV a field whose
# quote never closes (RFC 4180 §2), so the export does not read as a complete one.
ABORTED_MARKER = '\n"roster: export aborted: this body is incomplete, run it again\n'


class StreamAborted(BrokenPipeError):
    """Ends the connection of a body that failed (already logged, once, with its request id).

    gunicorn ends a connection whose write failed (EPIPE) with one DEBUG line, without
    writing the chunked body's last chunk; any other exception would be logged again, with a
    second traceback and no request id."""

    def __init__(self) -> None:
        super().__init__(errno.EPIPE, "the streamed response failed; the connection is cut")


class TrackedBody:
    """A streamed body whose outcome is recorded once, when it ends: ``record(ending)``."""

    def __init__(self, body: Iterable[Any], record: Callable[[Ending], None],
                 request_id: str | None, route: str) -> None:
        self._body = body
        self._record = record
        self._request_id = request_id
        self._route = route
        self._sent = 0
        self._started = False
        self._done = False

    def __iter__(self) -> Iterator[Any]:
        self._started = True
        try:
            for chunk in self._body:
                self._sent += 1
                yield chunk
        except GeneratorExit:
            # Closed at a yield: the server stopped asking for chunks (its write failed).
            self._finish("disconnected")
            raise
        except Exception:
            log.error("streamed response of %s failed after %d chunk(s) were sent; the "
                      "body ends with an error line and the connection is cut", self._route,
                      self._sent, exc_info=True,
                      extra={"request_id": self._request_id, "chunks_sent": self._sent})
            self._finish("aborted")
            yield ABORTED_MARKER
            raise StreamAborted() from None
        self._finish("whole")

    def _finish(self, ending: Ending) -> None:
        if not self._done:
            self._done = True
            self._record(ending)

    def close(self) -> None:
        """The server is done with the body. Before its end: the client went away (the
        server's write failed, PEP 3333 has it close the body); never started: a HEAD, its
        status. The inner body's close ends its transaction."""
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            self._finish("disconnected" if self._started else "whole")
