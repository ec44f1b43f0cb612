"""Engines: SQLite's pragmas, fold function and writers' queue; PostgreSQL's pool and driver
settings; the JSON codec both use. ``app.db.Database`` builds its engine here."""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import weakref
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from app.folding import simple_lower
from app.pool_ping import ping_after_idle
from app.sql import fold_text
from app.sqlite_writers import SAFETY_CHECKPOINT_PAGES, WriterQueue, install

# Whether the current SQLite transaction will write (BEGIN IMMEDIATE) or only read; set by
# ``Database.transaction`` and ``Database.reader`` around each unit.
SQLITE_WRITE: ContextVar[bool] = ContextVar("SQLITE_WRITE", default=True)
# How long the current SQLite writer waits for the write lock, in milliseconds, when not the
# connection's busy timeout: set by ``Database.transaction(lock_wait_ms=...)``.
SQLITE_LOCK_WAIT_MS: ContextVar[int | None] = ContextVar("SQLITE_LOCK_WAIT_MS", default=None)
# The SQLite file (device, inode) each engine's first connection opened: its connections
# stay on that file when its name is unlinked or renamed over (``sqlite_file_problem``).
_OPENED_FILES: weakref.WeakKeyDictionary[Engine, tuple[int, int]] = weakref.WeakKeyDictionary()


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False,
                busy_timeout_ms: int = 5000, prepared_statements: bool = True) -> Engine:
    """Create the engine; SQLite gets WAL, foreign keys and a busy timeout.

    ``hide_parameters``: a database error's message (and ``echo``) names the statement but
    never its values, which hold request bodies the flight recorder keeps, token digests and
    personal data: a logged error must not carry them.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        create_private_sqlite_file(url)
        # A file's pool has no ceiling: each thread keeps one connection for as long as it
        # lives (app/sqlite_connections.py), so a bounded pool would make the thread after
        # the last slot wait for a connection no one gives back. A SQLite connection is a
        # file handle and its page cache, not a server's resource.
        pool: dict[str, Any] = ({"poolclass": NullPool} if memory_url(url)
                                else {"pool_size": pool_size, "max_overflow": -1})
        engine = create_engine(url, echo=echo, hide_parameters=True,
                               connect_args={"check_same_thread": False},
                               json_serializer=json_dumps, json_deserializer=json_loads,
                               **pool)
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    # psycopg calls these for json/jsonb values (SQLAlchemy hands them to its loaders).
    # prepare_threshold None: psycopg never prepares (database.prepared_statements; a pooler
    # in transaction mode, https://www.psycopg.org/psycopg3/docs/advanced/prepare.html).
    engine = create_engine(url, echo=echo, hide_parameters=True, pool_size=pool_size,
                           max_overflow=pool_size,
                           json_serializer=json_dumps, json_deserializer=json_loads,
                           connect_args=_postgres_connect_args(parsed.query,
                                                               prepared_statements))
    ping_after_idle(engine)  # not pool_pre_ping: a round trip per request (app/pool_ping.py)
    return engine


def create_private_sqlite_file(url: str) -> None:
    """Create a SQLite URL's database file, if it does not exist yet, readable and writable
    by its owner only (0600): it holds personal data, token digests and encrypted secrets,
    and SQLite would create it with the process umask (0644: readable by every local
    user). Its -wal and -shm files take the database file's mode (SQLite's unix VFS). An
    existing file keeps the mode it has: an operator may have chosen it."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or memory_url(url):
        return
    path = parsed.database
    if not path or path.startswith("file:"):
        return
    # Anything else (it exists, no such directory, a read-only mount) is SQLite's to report.
    with contextlib.suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


# Most JSON columns of a user (ims, photos, x509Certificates ...) hold an empty list: a page
# of 100 users decoded ~900 of them with json.loads, a tenth of the page's CPU. SQLite gives
# the text as str, psycopg as bytes (jsonb prints an empty array or object just so).
_EMPTY_JSON: dict[str | bytes, type[list[Any]] | type[dict[str, Any]]] = {
    "[]": list, "{}": dict, b"[]": list, b"{}": dict}


# Integers orjson may read as floats have 20 digits or more (2**64 has 20), or 19 and a minus
# (-2**63 has 19): any run of 19 digits is tested, the cheapest pattern that finds them all
# (with an alternation, the search cost more than json.loads). SQLite gives JSON as str,
# psycopg as bytes.
_LONG_DIGITS = {str: re.compile(r"[0-9]{19}"), bytes: re.compile(rb"[0-9]{19}")}


def json_dumps(value: Any) -> str:
    """Python values as JSON text for the database; empty lists and objects without the
    encoder (a created user writes seven of them)."""
    if not value and isinstance(value, list | dict):
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value)


def json_loads(text: str | bytes) -> Any:
    """The database's JSON text as Python values; empty lists and objects without the
    parser, each a new one.

    orjson reads the rest (a user's emails: 0.4 us against json.loads' 1.8), except where it
    would not give back what ``json_dumps`` wrote: it reads an integer past 64 bits as a
    float, so text with a run of 19 digits (maybe such an integer; maybe a long number in a
    string) takes ``json.loads``, as does what orjson refuses (NaN, a lone surrogate).
    """
    empty = _EMPTY_JSON.get(text)
    if empty is not None:
        return empty()
    pattern = _LONG_DIGITS.get(type(text))
    if pattern is not None and pattern.search(text) is None:  # type: ignore[arg-type]
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


# libpq connection parameters (https://www.postgresql.org/docs/current/libpq-connect.html)
# unless the URL sets them: a server that accepts the connection but never answers (a dead
# host behind a proxy, a black-holed route) held a request thread, and libpq waits without a
# limit by default. Keepalives find a connection whose peer vanished within about a minute.
_PG_CONNECT_DEFAULTS = {"connect_timeout": "10", "keepalives": "1", "keepalives_idle": "30",
                        "keepalives_interval": "10", "keepalives_count": "3"}


def _postgres_connect_args(query: Mapping[str, Any], prepared_statements: bool
                           ) -> dict[str, Any]:
    args: dict[str, Any] = {k: v for k, v in _PG_CONNECT_DEFAULTS.items() if k not in query}
    if not prepared_statements:
        args["prepare_threshold"] = None
    return args


def memory_url(url: str) -> bool:
    """Whether ``url`` is an in-memory SQLite database (one per connection)."""
    return make_url(url).database in (None, "", ":memory:")


def sqlite_refuses_writes(engine: Engine) -> bool:
    """Whether this SQLite database refuses this process's writes: the file, its directory
    (the -wal and -shm files) or its mount is read-only, or the URL opened it ``mode=ro``.

    Opening and reading work then, so only a write tells: one that changes nothing, rolled
    back, on a connection that does not wait (SQLite's busy handler or the writers' queue):
    a database busy with another writer is writable.
    """
    raw = engine.raw_connection()
    try:
        dbapi_connection: sqlite3.Connection = raw.driver_connection  # type: ignore[assignment]
        busy_timeout = dbapi_connection.execute("PRAGMA busy_timeout").fetchone()[0]
        dbapi_connection.execute("PRAGMA busy_timeout=0")
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            try:
                dbapi_connection.execute("UPDATE alembic_version SET version_num = version_num")
            finally:
                dbapi_connection.execute("ROLLBACK")
        except sqlite3.OperationalError as exc:
            return "readonly" in str(exc)  # "attempt to write a readonly database"
        finally:
            dbapi_connection.execute(f"PRAGMA busy_timeout={int(busy_timeout)}")
        return False
    finally:
        raw.close()


def _file_identity(engine: Engine) -> tuple[int, int] | None:
    """(device, inode) of the engine's SQLite file as its name now finds it; None in memory
    or when the name finds nothing."""
    path = sqlite_path(engine.url)
    if memory_url(str(engine.url)) or path in ("", ":memory:"):
        return None
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def sqlite_file_problem(engine: Engine) -> str | None:
    """Whether the SQLite file this engine opened is no longer the one its name finds:
    ``"database file missing"`` (unlinked) or ``"database file replaced"`` (another file
    renamed over it). Its connections, held from one request to the next, go on reading and
    writing the file they opened, which no other process (a CLI command, the worker, the
    node after its restart) sees again. None when it is, or on PostgreSQL or in memory."""
    opened = _OPENED_FILES.get(engine)
    if opened is None:
        return None
    now = _file_identity(engine)
    if now is None:
        return "database file missing"
    return None if now == opened else "database file replaced"


def sqlite_path(url: URL) -> str:
    """The file of a SQLite URL, a URI filename's too (``sqlite:///file:/x.db?mode=ro&uri=true``
    opens /x.db, https://www.sqlite.org/uri.html)."""
    database = url.database or ""
    if url.query.get("uri") in ("true", "1") and database.startswith("file:"):
        return unquote(urlsplit(database).path)
    return database


def register_fold(dbapi_connection: sqlite3.Connection) -> None:
    """Give this SQLite connection ``roster_fold()``, which ``app.sql.fold`` compiles to, and
    ``roster_lower()``, the fold without normalization that the migrations before 0032 built
    their indexes on (they, and a downgrade below 0032, still need it). Two names: a node of
    a release before 0032, which knows no ``roster_fold()``, fails a write to an index on it
    (unknown function) rather than filing a name under a key the new fold never looks up."""
    dbapi_connection.create_function("roster_fold", 1, _fold, deterministic=True)
    dbapi_connection.create_function("roster_lower", 1, _simple_lower, deterministic=True)


def _fold(value: Any) -> Any:
    return fold_text(value) if isinstance(value, str) else value


def _simple_lower(value: Any) -> Any:
    return simple_lower(value) if isinstance(value, str) else value


def _configure_sqlite(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy emit BEGIN itself so that a transaction really starts at
        # the first statement and BEGIN IMMEDIATE can be used for writers.
        dbapi_conn.isolation_level = None
        register_fold(dbapi_conn)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        # Roster checkpoints outside the writers' queue (app.sqlite_writers); SQLite's own
        # checkpoint, inside a COMMIT, is only the safety net.
        cur.execute(f"PRAGMA wal_autocheckpoint={SAFETY_CHECKPOINT_PAGES}")
        cur.close()
        if engine not in _OPENED_FILES and (identity := _file_identity(engine)) is not None:
            _OPENED_FILES[engine] = identity

    # Writers of all processes queue on one file lock before BEGIN IMMEDIATE, instead of
    # sleeping in SQLite's busy handler (app.sqlite_writers explains why).
    queue = WriterQueue(None if memory_url(str(engine.url)) else sqlite_path(engine.url),
                        busy_timeout_ms / 1000)
    install(engine, queue)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: two writers queue on busy_timeout
        # instead of failing with "database is locked" on lock upgrade.
        if not SQLITE_WRITE.get():
            # BEGIN and BEGIN IMMEDIATE go on the driver's connection: a statement through
            # SQLAlchemy costs ~3x as much (~40 µs for a SCIM create).
            conn.connection.dbapi_connection.execute("BEGIN")
            return
        dbapi_connection = conn.connection.dbapi_connection
        wait_ms = SQLITE_LOCK_WAIT_MS.get()
        queue.acquire(dbapi_connection, None if wait_ms is None else wait_ms / 1000)
        try:
            if wait_ms is None:
                dbapi_connection.execute("BEGIN IMMEDIATE")
            else:
                _begin_waiting(dbapi_connection, wait_ms, busy_timeout_ms)
        except sqlite3.Error as exc:
            queue.release(dbapi_connection)
            # As SQLAlchemy would raise it (a lock timeout is then a retryable 503).
            raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc
        except BaseException:
            queue.release(dbapi_connection)
            raise

    # A connection reset, invalidated or closed by the pool without a rollback still frees it.
    @event.listens_for(engine, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, _state: Any) -> None:
        queue.release(dbapi_connection)

    @event.listens_for(engine, "invalidate")
    def _on_invalidate(dbapi_connection: Any, _record: Any, _exception: Any) -> None:
        queue.release(dbapi_connection)

    @event.listens_for(engine, "close")
    def _on_close(dbapi_connection: Any, _record: Any) -> None:
        queue.release(dbapi_connection)


def _begin_waiting(dbapi_connection: sqlite3.Connection, wait_ms: int,
                   busy_timeout_ms: int) -> None:
    """BEGIN IMMEDIATE waiting at most ``wait_ms`` in SQLite's busy handler (SQLite
    ``PRAGMA busy_timeout``); the connection's own timeout is back whatever happens: the
    thread keeps the connection for its next transactions (app/sqlite_connections.py)."""
    dbapi_connection.execute(f"PRAGMA busy_timeout={int(wait_ms)}")
    try:
        dbapi_connection.execute("BEGIN IMMEDIATE")
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
