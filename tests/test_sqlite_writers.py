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
