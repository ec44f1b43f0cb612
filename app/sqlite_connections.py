"""Each thread keeps its SQLite connection from one transaction to the next.

``Database.reader`` and ``Database.transaction`` used to check a connection out of
SQLAlchemy's pool and back in for every request: the checkout, the reset on return (a
rollback after the commit) and their events cost ~8 % of a SCIM lookup's instructions and
~5 % of a create's. A SQLite connection is a file handle and a page cache in this process,
nothing on a server, so a thread may as well keep one: between transactions it holds no
transaction, hence no WAL snapshot and no lock (https://sqlite.org/wal.html#concurrency).
Only the transaction is begun (BEGIN, or BEGIN IMMEDIATE for a writer) and ended per unit;
reads (``ThreadConnections.read``) begin none.

- A transaction inside a transaction on the same thread (its held connection busy) gets a
  pooled connection, as before.
- A thread that ends gives its connection back to the pool (``_Held.__del__``).
- ``close`` gives all of them back (``Database.dispose``).
- A forked child never uses, or closes, its parent's connections: closing a SQLite handle
  that another process opened is unsafe (https://sqlite.org/howtocorrupt.html#fork), so
  they are set aside unused.

PostgreSQL keeps the pool: its checkout ping after idle time (app/pool_ping.py) is what
notices a server that restarted or failed over, and a held connection would skip it.
"""

from __future__ import annotations

import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine

# Connections a forked child inherited: referenced forever, so nothing in the child closes
# them (see the module docstring).
_INHERITED: list[Any] = []


class _Held:
    """One thread's connection; returned to the pool when the thread's locals go."""

    __slots__ = ("__weakref__", "connection", "reading")

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.reading = False  # in a ``read`` block: busy, though in no transaction

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to tidy
            self.connection.close()


class ThreadConnections:
    """Per-thread connections of one engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pid = os.getpid()
        self._local = threading.local()
        self._all: weakref.WeakSet[_Held] = weakref.WeakSet()

    def idle(self) -> Connection | None:
        """This thread's connection, opened on first use; None while it is in a
        transaction already (a unit inside a unit), so the caller takes a pooled one."""
        if os.getpid() != self._pid:
            _INHERITED.append((self._local, self._all))
            self._pid, self._local, self._all = os.getpid(), threading.local(), weakref.WeakSet()
        held: _Held | None = getattr(self._local, "held", None)
        if held is None or held.connection.closed or held.connection.invalidated:
            held = self._local.held = _Held(self._engine.connect())
            self._all.add(held)
        connection = held.connection
        return None if held.reading or connection.in_transaction() else connection

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection | None]:
        """This thread's connection for reads in autocommit (None when it is busy).

        Statements run on the driver's cursor (``app.sql.fetch``) are each their own
        transaction: sqlite3 leaves a connection whose isolation_level is None in
        autocommit. One run through ``Connection.execute`` begins a transaction, committed
        when the block ends (rolled back if it raises), so the connection never stays in
        one. The connection counts as busy meanwhile: a read or unit of work inside takes
        another, as inside a transaction.
        """
        connection = self.idle()
        if connection is None:
            yield None
            return
        held: _Held = self._local.held
        held.reading = True
        try:
            yield connection
        except BaseException:
            if connection.in_transaction():
                connection.rollback()
            raise
        else:
            if connection.in_transaction():
                connection.commit()
        finally:
            held.reading = False

    def close(self) -> None:
        """Give every thread's connection back to the pool (before the engine is disposed)."""
        for held in list(self._all):
            with contextlib.suppress(Exception):
                held.connection.close()
