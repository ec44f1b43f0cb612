"""SQLite writers of every process queue on one file lock, held until COMMIT has returned."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from app.db import Database


def _locked(lock_path: Path) -> bool:
    """True when some writer holds the queue's file lock."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_lock_is_held_from_begin_to_after_commit_and_rollback(sqlite_file, tmp_path):
    """A write transaction holds the lock; commit and rollback both let it go."""
    lock = tmp_path / "w.db-writer"
    with sqlite_file.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (1, 0)"))
        assert _locked(lock)
    assert not _locked(lock)
    with pytest.raises(RuntimeError), sqlite_file.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (2, 0)"))
        assert _locked(lock)
        raise RuntimeError("roll back")
    assert not _locked(lock)
    with sqlite_file.transaction(readonly=True) as session:
        session.execute(text("SELECT count(*) FROM t")).scalar()
        assert not _locked(lock), "readers never queue"
    with sqlite_file.engine.connect() as connection:
        connection.execute(text("INSERT INTO t VALUES (3, 0)"))
        assert _locked(lock)
        connection.commit()
        assert not _locked(lock), "released by the COMMIT, not when the pool takes it back"


def _write_after(database: Database, parent_writing, started: float) -> None:
    # A forked child (a gunicorn worker) drops the parent's connections and opens its own.
    database.engine.dispose(close=False)
    parent_writing.wait(10)
    with database.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (2, NULL)"))  # waits for its turn here
        session.execute(text("UPDATE t SET at = :at WHERE n = 2"), {"at": time.time() - started})


def test_a_writer_in_another_process_waits_for_the_commit(sqlite_file, tmp_path):
    """A forked process's writer starts only after the first one committed, and succeeds."""
    context = multiprocessing.get_context("fork")
    parent_writing = context.Event()
    started = time.time()
    # Fork outside any transaction, as gunicorn does: SQLite's locks do not survive a fork.
    child = context.Process(target=_write_after, args=(sqlite_file, parent_writing, started))
    child.start()
    with sqlite_file.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (1, 0)"))
        parent_writing.set()
        time.sleep(0.3)
        holding = time.time() - started
    child.join(10)
    assert child.exitcode == 0
    with sqlite_file.transaction(readonly=True) as session:
        rows = dict(session.execute(text("SELECT n, at FROM t")).all())
    assert set(rows) == {1, 2}
    assert rows[2] >= holding - 0.05, "the second writer got in before the first committed"
    assert not _locked(tmp_path / "w.db-writer")


def test_threads_of_one_process_take_turns_without_lock_errors(sqlite_file, tmp_path):
    """Eight threads writing at once all commit; the queue is free afterwards."""
    errors: list[BaseException] = []

    def write(thread: int) -> None:
        try:
            for n in range(25):
                with sqlite_file.transaction() as session:
                    session.execute(text("INSERT INTO t VALUES (:n, 0)"),
                                    {"n": thread * 100 + n})
        except BaseException as exc:  # collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with sqlite_file.transaction(readonly=True) as session:
        assert session.execute(text("SELECT count(DISTINCT n) FROM t")).scalar() == 200
    assert not _locked(tmp_path / "w.db-writer")


def test_every_hundredth_write_commit_checkpoints_on_the_processs_own_thread(sqlite_file,
                                                                            tmp_path):
    """Write commits leave their pages in the WAL (SQLite's own checkpoint waits for 10,000
    pages) until the CHECKPOINT_EVERY-th, which has the checkpoint thread move them all into
    the database file; read transactions do not count."""
    from app.sqlite_writers import CHECKPOINT_EVERY, SAFETY_CHECKPOINT_PAGES, queue_of

    with sqlite_file.engine.connect() as connection:
        autocheckpoint = connection.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
    assert autocheckpoint == SAFETY_CHECKPOINT_PAGES
    queue = queue_of(sqlite_file.engine)
    assert queue is not None
    assert queue.checkpointer is not None
    database = tmp_path / "w.db"

    def write(n: int) -> None:
        with sqlite_file.transaction() as session:
            session.execute(text("INSERT INTO t VALUES (:n, randomblob(3000))"), {"n": n})
        with sqlite_file.transaction(readonly=True) as session:
            session.execute(text("SELECT count(*) FROM t")).scalar()

    for round_ in range(2):
        while queue.write_commits % CHECKPOINT_EVERY != CHECKPOINT_EVERY - 1:
            write(0)
        time.sleep(0.2)  # any checkpoint an earlier round asked for has finished
        done, size = queue.checkpointer.done, database.stat().st_size
        assert queue.write_commits % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1
        write(1)
        deadline = time.monotonic() + 10
        while queue.checkpointer.done == done:
            assert time.monotonic() < deadline, "no checkpoint after the hundredth write"
            time.sleep(0.01)
        assert database.stat().st_size > size, round_
    assert not _locked(tmp_path / "w.db-writer")


def test_no_checkpoint_before_the_hundredth_write_commit(sqlite_file, tmp_path):
    """Ninety-nine write commits on a new database leave the file as it was."""
    from app.sqlite_writers import CHECKPOINT_EVERY, queue_of

    queue = queue_of(sqlite_file.engine)
    assert queue is not None
    assert queue.checkpointer is not None
    database = tmp_path / "w.db"
    size = database.stat().st_size
    while queue.write_commits < CHECKPOINT_EVERY - 1:
        with sqlite_file.transaction() as session:
            session.execute(text("INSERT INTO t VALUES (1, randomblob(3000))"))
    time.sleep(0.2)
    assert queue.checkpointer.done == 0
    assert database.stat().st_size == size


def _hold_lock_file(lock_path: Path, holding, release, forever: bool) -> None:
    # Another process's writer, reduced to its file lock: hold it until told (or killed).
    from app.sqlite_writers import WriterQueue

    queue = WriterQueue(str(lock_path)[: -len("-writer")], 5.0)
    queue.acquire("holder")
    holding.set()
    release.wait(None if forever else 10)
    queue.release("holder")


def _holder(lock_path: Path, *, forever: bool = False):
    context = multiprocessing.get_context("fork")
    holding, release = context.Event(), context.Event()
    child = context.Process(target=_hold_lock_file, args=(lock_path, holding, release, forever))
    child.start()
    assert holding.wait(10)
    return child, release


def test_a_waiting_writer_sleeps_until_the_release_wakes_it(tmp_path, monkeypatch):
    """The waiter sleeps on the lock file's counter (app/futex.py) and the holder's release
    wakes it: one or two sleeps, not the hundreds a 0.5 ms poll takes in 0.3 s. Its unwoken
    sleep is stretched to a minute here, so only the wake gets it in within seconds."""
    from app import sqlite_writers
    from app.sqlite_writers import queue_of

    monkeypatch.setattr(sqlite_writers, "_MAX_SLEEP", 60.0)
    database = Database(f"sqlite:///{tmp_path / 'w.db'}", busy_timeout_ms=120_000)
    lock = tmp_path / "w.db-writer"
    try:
        child, release = _holder(lock)
        queue = queue_of(database.engine)
        assert queue is not None
        locked: list[bool] = []

        def write() -> None:
            with database.transaction() as session:
                session.execute(text("CREATE TABLE t (n INTEGER)"))
                locked.append(_locked(lock))

        writer = threading.Thread(target=write)
        writer.start()
        # Release only once the writer sleeps (a fixed delay let a busy machine start the
        # writer after the release: it never waited).
        deadline = time.monotonic() + 10
        while queue.waits == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        release.set()
        writer.join(40)
        assert locked == [True]
        assert time.monotonic() - started < 30, "woken by the timeout, not by the release"
        child.join(10)
        assert child.exitcode == 0
        assert 1 <= queue.waits <= 2
    finally:
        database.dispose()


def test_a_writer_gets_the_lock_its_killed_holder_left(sqlite_file, tmp_path):
    """A holder that dies wakes nobody; the kernel frees its lock and the waiter, which
    never sleeps longer than _MAX_SLEEP unwoken, takes it and writes."""
    import signal

    lock = tmp_path / "w.db-writer"
    child, _release = _holder(lock, forever=True)
    threading.Timer(0.2, os.kill, (child.pid, signal.SIGKILL)).start()
    started = time.monotonic()
    with sqlite_file.transaction() as session:
        session.execute(text("INSERT INTO t VALUES (1, 0)"))
        assert _locked(lock), "the writer went on without the lock"
    # The busy timeout is 5 s: an unbounded sleep would have lasted that long.
    assert time.monotonic() - started < 3
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    with sqlite_file.transaction(readonly=True) as session:
        assert session.execute(text("SELECT count(*) FROM t")).scalar() == 1


def test_without_futexes_a_writer_polls_the_lock(tmp_path):
    """The fallback (no futexes on the platform): the waiter polls and gets the lock."""
    from app.sqlite_writers import WriterQueue

    lock = tmp_path / "p.db-writer"
    child, release = _holder(lock)
    threading.Timer(0.2, release.set).start()
    queue = WriterQueue(str(tmp_path / "p.db"), 5.0, wake_ups=False)
    queue.acquire("waiter")
    try:
        assert _locked(lock)
        assert queue.waits > 50, "0.2 s of polling every 0.5 ms at most"
    finally:
        assert queue.release("waiter")
    child.join(10)
    assert not _locked(lock)
    queue.close()


def test_the_shared_counter_is_one_word_for_every_mapping(tmp_path):
    """Two mappings of one file see each other's bumps; a wait on a stale value returns at
    once, a wait on the current one returns after its timeout."""
    from app.futex import SharedCounter

    path = tmp_path / "c"
    fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o600) for _ in range(2)]
    first, second = (SharedCounter.open(fd) for fd in fds)
    assert first is not None
    assert second is not None
    try:
        before = second.value
        first.bump()
        assert second.value == (before + 1) & 0xFFFFFFFF
        second.wait(before, 60.0)  # stale: returns at once (else this test hangs a minute)
        second.wait(second.value, 0.01)
        first.wake()  # nobody waiting: harmless
    finally:
        first.close()
        second.close()
        for fd in fds:
            os.close(fd)
