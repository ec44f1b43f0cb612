"""Lock waits for race tests: hold a lock in one connection, start a request on a thread,
go on once it waits for that lock (PostgreSQL's ``pg_stat_activity``), release.

The set-up the PostgreSQL race tests share (SSO login and token refresh racing a
deprovisioning, a directory disable racing reactivations, concurrent unit creates): a
transaction or a bare ``SELECT ... FOR UPDATE`` holds a row, :func:`started` runs the
request and returns once it waits for a lock, and the test releases the row and reads the
outcome. On SQLite a writer waits for the single write lock, which ``pg_stat_activity``
cannot show: :func:`waiting_or_done` gives the thread half a second there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from app.db import Database
from tests.conftest import rows
from tests.threads import background

_WAITERS = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")


def lock_waiters(db: Database) -> int:
    """How many sessions of this (PostgreSQL) database wait for a lock now."""
    return int(rows(db, _WAITERS)[0][0])


def wait_for_a_row_lock_wait(db: Database) -> None:
    """Until another session of this database waits for a row lock (or 10 s have passed)."""
    for _ in range(200):
        if lock_waiters(db):
            return
        time.sleep(0.05)


def waiting_or_done(db: Database, thread: threading.Thread, waiters: int = 1) -> None:
    """Until ``thread`` has finished or ``waiters`` sessions wait for a lock (PostgreSQL's
    row locks, 10 s at the most; SQLite's write lock: half a second)."""
    if db.dialect == "sqlite":
        thread.join(0.5)
        return
    for _ in range(200):
        if not thread.is_alive() or lock_waiters(db) >= waiters:
            return
        time.sleep(0.05)


def started(db: Database, call: Callable[[], Any], *,
            waiters: int = 1) -> tuple[threading.Thread, dict[str, Any]]:
    """``call`` on a background thread (tests.threads.background), returned once it has
    finished or ``waiters`` sessions wait for a lock, itself among them: the thread, and
    the dict its result (or exception) lands in under ``result``."""
    thread, outcome = background(call, start=True)
    waiting_or_done(db, thread, waiters)
    return thread, outcome


@contextmanager
def held(db: Database, statement: str, **params: Any) -> Iterator[None]:
    """The rows ``statement`` locks (a ``SELECT ... FOR UPDATE``), held by a transaction of
    their own until the block ends, then released by its rollback."""
    blocker = db.engine.connect()
    blocker.begin()
    blocker.execute(sa.text(statement), params)
    try:
        yield
    finally:
        blocker.rollback()
        blocker.close()


@contextmanager
def in_flight(db: Database, work: Callable[[Session], Any]) -> Iterator[None]:
    """``work`` done in a transaction of its own, on a thread, that holds what it locked
    and commits only when the block ends."""
    holding, release = threading.Event(), threading.Event()

    def run() -> None:
        with db.transaction() as session:
            work(session)
            holding.set()
            release.wait(30)

    thread, outcome = background(run, start=True)
    assert holding.wait(10), outcome
    try:
        yield
    finally:
        release.set()
        thread.join(30)
