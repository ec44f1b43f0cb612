"""One queue for the SQLite writers of every process on a database file.

SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps
1, 2, 5, 10 ... up to 100 ms between tries, so the lock often sits idle while writers
sleep (creates ran at a small fraction of a bare insert). Writers here take an advisory
``flock`` on ``<database>-writer`` first, polling it every 50 µs to 0.5 ms, so the next
writer starts within half a millisecond of the last commit, across threads and gunicorn
workers alike. The lock is held from BEGIN IMMEDIATE until the COMMIT (or ROLLBACK) has
really finished. Past the busy timeout a writer goes on without it, so a stuck holder
degrades to plain SQLite behaviour (a "database is locked" error), never a hang.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from typing import Any

from sqlalchemy import Engine

_FIRST_DELAY, _MAX_DELAY = 50e-6, 0.5e-3


class WriterQueue:
    """Advisory writer lock per connection: a file lock, or a thread lock in memory."""

    def __init__(self, database_path: str | None, timeout: float) -> None:
        self._path = f"{database_path}-writer" if database_path else None
        self._timeout = timeout
        self._memory_lock = threading.Lock()
        # id(dbapi connection) -> the descriptor it holds locked (-1: the memory lock).
        self._held: dict[int, int] = {}
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def acquire(self, dbapi_connection: Any) -> None:
        """Wait for this connection's turn to write (at most the timeout)."""
        key = id(dbapi_connection)
        if self._path is None:
            if self._memory_lock.acquire(timeout=self._timeout):
                self._held[key] = -1
            return
        if os.getpid() != self._pid:
            # A forked child shares its parent's open file descriptions, and a flock on a
            # shared description is one lock: open its own.
            self._pid, self._fds, self._held = os.getpid(), {}, {}
        fd = self._fds.get(key)
        if fd is None:
            fd = self._fds[key] = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        deadline, delay = time.monotonic() + self._timeout, _FIRST_DELAY
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return
                time.sleep(delay)
                delay = min(delay * 2, _MAX_DELAY)
                continue
            self._held[key] = fd
            return

    def release(self, dbapi_connection: Any) -> None:
        """Let the next writer in (no-op when this connection holds nothing)."""
        fd = self._held.pop(id(dbapi_connection), None)
        if fd == -1:
            self._memory_lock.release()
        elif fd is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def forget(self, dbapi_connection: Any) -> None:
        """The connection is closing: release, and close its descriptor."""
        self.release(dbapi_connection)
        fd = self._fds.pop(id(dbapi_connection), None)
        if fd is not None:
            os.close(fd)


def install(engine: Engine, queue: WriterQueue) -> None:
    """Release the writer lock after the DBAPI COMMIT/ROLLBACK has returned.

    SQLAlchemy's ``commit`` event fires before the COMMIT runs, which would let the next
    writer in while this one still holds SQLite's lock; wrapping the dialect's calls
    releases at the right moment.
    """
    dialect = engine.dialect
    plain_commit, plain_rollback = dialect.do_commit, dialect.do_rollback

    # The dialect is handed the pool's proxy; the queue knows the raw DBAPI connection.
    def do_commit(proxy: Any) -> None:
        try:
            plain_commit(proxy)
        finally:
            queue.release(getattr(proxy, "dbapi_connection", proxy))

    def do_rollback(proxy: Any) -> None:
        try:
            plain_rollback(proxy)
        finally:
            queue.release(getattr(proxy, "dbapi_connection", proxy))

    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
