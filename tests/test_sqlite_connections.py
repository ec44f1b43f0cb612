"""Each thread keeps its SQLite connection between transactions (app/sqlite_connections.py)."""

from __future__ import annotations

import os
import sqlite3
import threading

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, text

from app.db import Database
from app.sql import fetch


def _driver(connection: Connection) -> object:
    return connection.connection.dbapi_connection


def _count(database: Database) -> tuple[int, object]:
    with database.reader() as connection:
        return connection.execute(text("SELECT count(*) FROM t")).scalar_one(), \
            _driver(connection)


def _reads_at_once(database: Database, threads: int) -> list[tuple[int, object]]:
    """Each of ``threads`` threads reads, then waits until all have read, so they all hold
    their connections at the same time; (count, driver connection) per thread, after the
    threads have ended. A thread that waits too long breaks the barrier and is missing."""
    reads: list[tuple[int, object]] = []
    barrier = threading.Barrier(threads)

    def read() -> None:
        reads.append(_count(database))
        barrier.wait(timeout=10)

    started = [threading.Thread(target=read) for _ in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout=20)
    assert not barrier.broken
    return reads


def _insert(database: Database) -> None:
    with database.transaction() as session:
        session.execute(text("INSERT INTO t (n) VALUES (1)"))


def test_a_thread_reads_on_one_connection_and_sees_each_commit(sqlite_file):
    """Reads of one thread share a driver connection, yet each read is its own transaction:
    it sees what was committed since the last one."""
    before, first = _count(sqlite_file)
    _insert(sqlite_file)
    after, second = _count(sqlite_file)
    assert (before, after) == (0, 1)
    assert first is second
    assert sqlite_file.engine.pool.checkedout() == 1  # the held one, nothing else


def test_between_reads_the_held_connection_pins_no_snapshot(sqlite_file, tmp_path):
    """A finished read leaves no transaction open, so a TRUNCATE checkpoint (which needs
    every reader gone from the WAL) succeeds at once; during a read it cannot."""
    _insert(sqlite_file)
    checkpoint = sqlite3.connect(tmp_path / "w.db", isolation_level=None, timeout=0.1)
    try:
        with sqlite_file.reader() as connection:
            connection.execute(text("SELECT count(*) FROM t")).scalar_one()
            busy_during = checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        busy_after = checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    finally:
        checkpoint.close()
    assert (busy_during, busy_after) == (1, 0)


def test_a_read_inside_a_read_takes_another_connection(sqlite_file):
    """The held connection is busy with the outer read; the inner one gets a pooled one, and
    the outer read still works afterwards."""
    with sqlite_file.reader() as outer:
        with sqlite_file.reader() as inner:
            assert _driver(inner) is not _driver(outer)
            assert inner.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        assert outer.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
    assert sqlite_file.engine.pool.checkedout() == 1


def test_a_read_that_fails_rolls_back_and_the_connection_serves_the_next(sqlite_file):
    """An error inside a read ends its transaction; the thread's next read works."""
    with pytest.raises(Exception, match="no such table"), sqlite_file.reader() as connection:
        connection.execute(text("SELECT * FROM missing"))
    assert _count(sqlite_file)[0] == 0


def test_threads_each_hold_one_and_give_it_back_when_they_end(sqlite_file):
    """Two threads hold two connections; when the threads are gone both are back in the
    pool (no connection is left checked out for the garbage collector to find)."""
    before = sqlite_file.engine.pool.checkedout()  # this thread's own (the fixture wrote)
    reads = _reads_at_once(sqlite_file, 2)
    assert len(reads) == 2
    assert reads[0][1] is not reads[1][1]
    assert sqlite_file.engine.pool.checkedout() == before


def test_dispose_gives_back_every_held_connection(sqlite_file):
    """Database.dispose closes the held connections along with the pool."""
    _count(sqlite_file)
    assert sqlite_file.engine.pool.checkedout() == 1
    sqlite_file.dispose()
    assert sqlite_file.engine.pool.checkedout() == 0
    assert _count(sqlite_file)[0] == 0  # and a later read opens a fresh one


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_uses_its_parents_connection(sqlite_file):
    """After a fork the child opens its own connection and leaves the inherited one alone."""
    parent = id(_count(sqlite_file)[1])
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report whether its read used the parent's connection
        try:
            os.write(write, b"same" if id(_count(sqlite_file)[1]) == parent else b"own")
        finally:
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"own"
    assert _count(sqlite_file)[0] == 0  # the parent's connection still works


def _writer_driver(database: Database, *, fail: bool = False) -> object:
    with database.transaction() as session:
        session.execute(text("INSERT INTO t (n) VALUES (2)"))
        driver = _driver(session.connection())
        if fail:
            raise RuntimeError("roll back")
    return driver


def test_writes_and_reads_of_a_thread_share_its_connection(sqlite_file, tmp_path):
    """A unit of work runs on the thread's connection too: its commit is seen by the next
    read, and the writers' queue lock is free again once it has committed."""
    from tests.test_sqlite_writers import _locked

    writer = _writer_driver(sqlite_file)
    count, reader = _count(sqlite_file)
    assert count == 1
    assert writer is reader
    assert not _locked(tmp_path / "w.db-writer")
    assert sqlite_file.engine.pool.checkedout() == 1


def test_a_failed_unit_of_work_leaves_nothing_and_the_connection_serves_on(sqlite_file):
    """A unit that raises is rolled back on the held connection; the next one works."""
    with pytest.raises(RuntimeError):
        _writer_driver(sqlite_file, fail=True)
    assert _count(sqlite_file)[0] == 0
    _writer_driver(sqlite_file)
    assert _count(sqlite_file)[0] == 1


def test_a_savepoint_rolls_back_alone_on_the_held_connection(sqlite_file):
    """begin_nested works on the thread's connection: only the savepoint's row is gone."""
    with sqlite_file.transaction() as session:
        session.execute(text("INSERT INTO t (n) VALUES (1)"))
        savepoint = session.begin_nested()
        session.execute(text("INSERT INTO t (n) VALUES (2)"))
        savepoint.rollback()
    with sqlite_file.reader() as connection:
        assert connection.execute(text("SELECT n FROM t")).scalars().all() == [1]


def test_a_unit_of_work_inside_a_read_takes_another_connection(sqlite_file):
    """A write while the thread's connection holds a read runs on a pooled connection."""
    with sqlite_file.reader() as outer:
        assert _writer_driver(sqlite_file) is not _driver(outer)
    assert _count(sqlite_file)[0] == 1


def test_more_threads_than_the_pool_size_each_get_a_connection(sqlite_file):
    """Threads keep their connections, so the SQLite pool has no ceiling: twenty threads
    holding theirs at once (a bounded pool has fifteen) all read without waiting."""
    assert sqlite_file.engine.pool.size() == 5
    assert [count for count, _driver in _reads_at_once(sqlite_file, 20)] == [0] * 20


_T = sa.table("t", sa.column("n"))
_COUNT = sa.select(sa.func.count()).select_from(_T)  # built once, as fetch() wants


def test_a_read_runs_its_statements_without_a_transaction(sqlite_file, tmp_path):
    """Statements of a read on the driver's cursor (fetch) are each their own transaction:
    none stays open between them, so a TRUNCATE checkpoint succeeds in the middle of the
    read, and each statement sees what was committed before it."""
    _insert(sqlite_file)
    checkpoint = sqlite3.connect(tmp_path / "w.db", isolation_level=None, timeout=0.1)
    try:
        with sqlite_file.reader() as connection:
            first = fetch(connection, _COUNT, {})[0][0]
            assert not _driver(connection).in_transaction
            assert not connection.in_transaction()
            busy = checkpoint.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            checkpoint.execute("INSERT INTO t (n) VALUES (2)")
            second = fetch(connection, _COUNT, {})[0][0]
    finally:
        checkpoint.close()
    assert (first, busy, second) == (1, 0, 2)


def test_a_read_that_executes_is_committed_at_its_end(sqlite_file):
    """A statement through Connection.execute begins a transaction; the read ends it, so the
    thread's connection serves the next unit of work at once."""
    with sqlite_file.reader() as connection:
        connection.execute(text("SELECT count(*) FROM t")).scalar_one()
        assert connection.in_transaction()
    assert not connection.in_transaction()
    assert not _driver(connection).in_transaction
    _insert(sqlite_file)
    assert _count(sqlite_file)[0] == 1
