"""One queue for the SQLite writers of every process on a database file.

SQLite lets one writer in at a time; the others wait in its busy handler, which sleeps
1, 2, 5, 10 ... up to 100 ms between tries, so the lock often sits idle while writers
sleep (creates ran at a small fraction of a bare insert). Writers here take an advisory
``flock`` on ``<database>-writer`` first, across gunicorn workers and ``roster worker``;
threads of one process queue on a thread lock before that, so at most one thread per
process waits for the file. That thread sleeps until the holder lets go and wakes it
(app/futex.py: a counter in the lock file's first page), so the next writer starts right
after the last commit; where futexes are not available it polls the lock every 50 µs to
0.5 ms instead. The lock is held from BEGIN IMMEDIATE until the COMMIT (or ROLLBACK) has
really finished. Past the busy timeout a writer goes on without it, so a stuck holder
degrades to plain SQLite behaviour (a "database is locked" error), never a hang.

Checkpoints (https://sqlite.org/wal.html#ckpt) run outside the queue. SQLite's automatic
checkpoint runs inside the COMMIT that crosses its threshold, so the writer copying the WAL
back and syncing the file held everyone else up (a create's COMMIT took 0.15 ms at p50 but
5.8 ms at p99). Here every ``CHECKPOINT_EVERY``-th write commit of a process wakes that
process's checkpoint thread, which runs a PASSIVE checkpoint (it waits for no reader or
writer) on a connection of its own, so neither the queue nor the request waits for the
copy and the fsyncs. The automatic checkpoint stays as a safety net at
``SAFETY_CHECKPOINT_PAGES``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
import time
import weakref
from typing import Any

from sqlalchemy import Engine, event

from app.futex import SharedCounter

_FIRST_DELAY, _MAX_DELAY = 50e-6, 0.5e-3
# The longest a waiter sleeps before it tries the lock again unwoken: a holder that died
# released its flock without waking anyone.
_MAX_SLEEP = 0.01
# A process's write commits between its own checkpoints (a SCIM create writes ~10 pages,
# so two busy workers keep the WAL near SQLite's default of 1,000 pages).
CHECKPOINT_EVERY = 100
# SQLite's automatic checkpoint (PRAGMA wal_autocheckpoint), for a WAL that outgrows ours.
SAFETY_CHECKPOINT_PAGES = 10_000


class Checkpointer:
    """PASSIVE checkpoints of one database file on a daemon thread of this process."""

    def __init__(self, database_path: str) -> None:
        self._database = database_path
        # The running thread, its process, and its (wake, stop) events.
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._events = (threading.Event(), threading.Event())
        self.done = 0  # checkpoints run by this process (for tests and diagnostics)

    def request(self) -> None:
        """Checkpoint soon; starts the thread (again after ``stop`` or a fork) when needed."""
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid, self._events = os.getpid(), (threading.Event(), threading.Event())
            self._thread = threading.Thread(target=self._run, args=self._events,
                                            name="roster-sqlite-checkpoint", daemon=True)
            self._thread.start()
        self._events[0].set()

    def stop(self) -> None:
        """End the thread (the engine was disposed); a later ``request`` starts another."""
        wake, stop = self._events
        stop.set()
        wake.set()
        self._thread = None

    def _run(self, wake: threading.Event, stop: threading.Event) -> None:
        connection = sqlite3.connect(self._database, isolation_level=None,
                                     check_same_thread=False)
        try:
            while True:
                wake.wait()
                wake.clear()
                if stop.is_set():
                    return
                # A checkpoint already running elsewhere makes this one busy; the next one
                # goes on from where the WAL stands then.
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.done += 1
        finally:
            connection.close()


class WriterQueue:
    """The writers' queue: a thread lock within the process, then a file lock across them.

    Threads of one process wait on the thread lock, which sleeps without polling and
    without waking the GIL holder; only the one thread holding it polls the file lock
    against the other processes. In memory (one process by definition) the thread lock is
    all there is.
    """

    def __init__(self, database_path: str | None, timeout: float, *,
                 wake_ups: bool = True) -> None:
        self._path = f"{database_path}-writer" if database_path else None
        self._timeout = timeout
        self._wake_ups = wake_ups  # False: always poll (tests of the fallback)
        self._pid = os.getpid()
        self._local = threading.Lock()
        # The lock file's descriptor and its shared counter (app/futex.py) if any, boxed so
        # a finalizer can close them without keeping the queue alive (an engine that is
        # never disposed must not leak them).
        self._box: list[Any] = []
        weakref.finalize(self, _close, self._box)
        self.waits = 0  # times a writer slept for the file lock (approximate, diagnostics)
        # The thread lock allows one holder: (id of its DBAPI connection, holds the file too).
        self._holder: tuple[int, bool] | None = None
        self.write_commits = 0  # this process's, approximately (threads may race on it)
        self.checkpointer = Checkpointer(database_path) if database_path else None
        if self.checkpointer is not None:
            weakref.finalize(self, self.checkpointer.stop)

    def acquire(self, dbapi_connection: Any, timeout: float | None = None) -> None:
        """Wait for this connection's turn to write (at most ``timeout`` seconds, by default
        the queue's)."""
        if os.getpid() != self._pid:
            # A forked child must not share its parent's lock state or file description
            # (a flock on a shared description is one lock): start afresh.
            self.close()  # the child's copy of the descriptor; the parent's lock stays
            self._pid, self._local, self._holder = os.getpid(), threading.Lock(), None
        timeout = self._timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        if not self._local.acquire(timeout=timeout):
            return
        self._holder = (id(dbapi_connection),
                        self._path is not None and self._lock_file(deadline))

    def _lock_file(self, deadline: float) -> bool:
        if not self._box:
            fd = os.open(self._path or "", os.O_RDWR | os.O_CREAT, 0o600)
            self._box.append(fd)
            counter = SharedCounter.open(fd) if self._wake_ups else None
            if counter is not None:
                self._box.append(counter)
        fd, delay, counter = self._box[0], _FIRST_DELAY, self._counter()
        while True:
            # Read before trying: a release in between moves it, and the wait returns.
            seen = counter.value if counter is not None else 0
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left < 0:
                    return False
                self.waits += 1
                if counter is not None:
                    counter.wait(seen, min(left, _MAX_SLEEP))
                else:
                    time.sleep(delay)
                    delay = min(delay * 2, _MAX_DELAY)

    def _counter(self) -> SharedCounter | None:
        return self._box[1] if len(self._box) > 1 else None

    def release(self, dbapi_connection: Any) -> bool:
        """Let the next writer in; False when this connection held nothing."""
        holder = self._holder
        if holder is None or holder[0] != id(dbapi_connection):
            return False
        self._holder = None
        if holder[1] and self._box:
            counter = self._counter()
            if counter is not None:
                counter.bump()  # still holding the lock: no other process bumps it now
            fcntl.flock(self._box[0], fcntl.LOCK_UN)
            if counter is not None:
                counter.wake()
        self._local.release()
        return True

    def committed(self) -> None:
        """After a write commit: every CHECKPOINT_EVERY-th wakes the checkpoint thread."""
        self.write_commits += 1
        if self.checkpointer is not None and not self.write_commits % CHECKPOINT_EVERY:
            self.checkpointer.request()

    def close(self) -> None:
        """Close the lock file and end the checkpoint thread (the engine was disposed)."""
        _close(self._box)
        if self.checkpointer is not None:
            self.checkpointer.stop()


def _close(box: list[Any]) -> None:
    while box:
        item = box.pop()
        if isinstance(item, int):
            os.close(item)
        else:
            item.close()


_QUEUES: weakref.WeakKeyDictionary[Engine, WriterQueue] = weakref.WeakKeyDictionary()


def queue_of(engine: Engine) -> WriterQueue | None:
    """The writers' queue of a SQLite engine (None for other databases)."""
    return _QUEUES.get(engine)


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
        raw = getattr(proxy, "dbapi_connection", proxy)
        try:
            plain_commit(proxy)
        except BaseException:
            queue.release(raw)
            raise
        if queue.release(raw):
            queue.committed()

    def do_rollback(proxy: Any) -> None:
        try:
            plain_rollback(proxy)
        finally:
            queue.release(getattr(proxy, "dbapi_connection", proxy))

    _QUEUES[engine] = queue
    dialect.do_commit = do_commit  # type: ignore[method-assign]
    dialect.do_rollback = do_rollback  # type: ignore[method-assign]
    event.listen(engine, "engine_disposed", lambda _engine: queue.close())

