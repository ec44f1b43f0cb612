"""The buffered log handler: formatted lines written in one call every ``flush_ms``."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import Any

# Every handler not yet collected, for the child of a fork (one hook, registered once).
_LIVE: weakref.WeakSet[BufferedStreamHandler] = weakref.WeakSet()


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Collects formatted lines and writes them in one call every ``flush_ms``.

    A write and flush per access-log line cost about a twentieth of a SCIM lookup on the
    server. Warnings and errors (and anything logged at exit) are written at once, so only
    INFO lines of the last interval can be lost if the process is killed outright.

    A forked child (gunicorn's workers with ``--preload``, where the app, and this handler,
    is built in the master) gets a flushing thread of its own and an empty buffer: threads
    do not survive a fork, so a worker's INFO lines stayed in memory, growing, until it
    exited, and the lines the master had buffered were written by it and by every worker.
    """

    def __init__(self, stream: Any, flush_ms: int) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        self._interval = flush_ms / 1000
        self._wake = threading.Event()
        self._start()
        _LIVE.add(self)
        atexit.register(self.flush)

    def _start(self) -> None:
        threading.Thread(target=self._run, name="log-flush", daemon=True).start()

    def _forked(self) -> None:
        """In the child of a fork: the parent writes what it buffered; a thread to flush."""
        self._pending = []
        if not self._wake.is_set():  # not closed
            self._start()

    def emit(self, record: logging.LogRecord) -> None:
        """Format now (the request's context is still there), write later."""
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return
        self.append(line)
        if record.levelno >= logging.WARNING:
            self.flush()

    def append(self, line: str) -> None:
        """Queue one formatted INFO line (``AccessLog`` formats its own)."""
        with self.lock:  # type: ignore[union-attr]
            self._pending.append(line)

    def flush(self) -> None:
        """Write every pending line in one call."""
        with self.lock:  # type: ignore[union-attr]
            lines, self._pending = self._pending, []
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # a closed stream at exit: nothing left to write to

    def close(self) -> None:
        """Write what is pending and stop the flushing thread."""
        self._wake.set()
        self.flush()
        super().close()

    def _run(self) -> None:
        while not self._wake.wait(self._interval):
            self.flush()


def _after_fork_in_child() -> None:
    for handler in list(_LIVE):
        handler._forked()


os.register_at_fork(after_in_child=_after_fork_in_child)
