"""Engine, declarative Base, and the one-transaction-per-unit-of-work discipline.

Services take a ``Session`` and never commit; the caller (a view or a CLI command)
opens exactly one ``transaction()`` and it commits or rolls back as a whole.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Connection,
    DateTime,
    Engine,
    MetaData,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.pool import NullPool
from sqlalchemy.types import TypeDecorator

# new_id: a UUID4 text (buffered OS randomness), the SCIM id and primary key of every row.
from app.ids import new_id as new_id
from app.log_throttle import EveryInterval
from app.pool_ping import ping_after_idle
from app.sql import fetch, fold_text
from app.sqlite_connections import ThreadConnections
from app.sqlite_writers import SAFETY_CHECKPOINT_PAGES, WriterQueue, install

log = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Whether the current SQLite transaction will write (BEGIN IMMEDIATE) or only read.
_sqlite_write: ContextVar[bool] = ContextVar("_sqlite_write", default=True)

# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# PostgreSQL SQLSTATEs worth a retry: class 08 (connection), class 40 (serialization failure,
# deadlock), lock_not_available, query_canceled (statement/lock timeout), server shutting down.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40")
_TRANSIENT_SQLSTATES = frozenset({"55P03", "57014", "57P01", "57P02", "57P03"})
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "database is busy")


def is_transient(exc: BaseException) -> bool:
    """A database error worth retrying: lock timeout, deadlock, serialization, lost connection.

    Schema or programming errors (a missing table, say) are not transient and stay 500s.
    """
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if type(orig).__module__.startswith("sqlite3"):
        return any(text in str(orig).lower() for text in _TRANSIENT_SQLITE)
    code = getattr(orig, "sqlstate", None)
    if code is None:
        # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all.
        return isinstance(exc, OperationalError)
    return code[:2] in _TRANSIENT_SQLSTATE_CLASSES or code in _TRANSIENT_SQLSTATES


# PostgreSQL's answer to a statement psycopg prepared on another server connection: the
# name is unknown (26000 invalid_sql_statement_name) or taken (42P05 duplicate_prepared_...).
_LOST_PREPARED_SQLSTATES = frozenset({"26000", "42P05"})
_LOST_PREPARED_LOG = EveryInterval(60.0)


def prepared_statement_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL not knowing (or already knowing) a statement psycopg
    prepared: a pooler in transaction mode gave the transaction another server connection
    (README, "Behind a connection pooler"). Logs what to do, at most once a minute per
    process; the request stays a 500, as the configuration is wrong, not the moment."""
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) not in _LOST_PREPARED_SQLSTATES:
        return False
    if _LOST_PREPARED_LOG.due():
        log.error("PostgreSQL does not have a statement psycopg prepared on this connection: "
                  "a pooler in transaction mode (PgBouncer) is in front of it? Set "
                  "database.prepared_statements = false (ROSTER_DATABASE__PREPARED_STATEMENTS"
                  "=false), or let the pooler keep prepared statements")
    return True


def utcnow() -> datetime:
    """Now, in UTC, with microseconds (the resolution both databases keep)."""
    return datetime.now(UTC)


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists and immutable leaves); several times faster
    than copy.deepcopy on the hot paths (a PATCH's working copy, an audit event's data)."""
    if isinstance(value, dict):
        return {key: copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [copy_json(item) for item in value]
    return value


def flush_if_pending(session: Session, kind: type[Any]) -> None:
    """Flush when an object of ``kind`` is pending, so a Core INSERT may reference it.

    Hot-path inserts (audit, outbox) bypass the ORM unit of work and run at once; a row
    they point to by foreign key may still be waiting in the session (an organization
    created in the same transaction).
    """
    if any(isinstance(obj, kind) for obj in session.new):
        session.flush()


_M = TypeVar("_M")


def insert_row(session: Session, model: type[_M], values: dict[str, Any]) -> _M:
    """INSERT one row of ``model`` at once with a Core statement; returns it as an object
    that is in the session as persistent (loaded, nothing pending).

    A flush of one new object runs the ORM unit of work, which cost a sixth of a SCIM
    create (all of it inside the write transaction), and building the object attribute by
    attribute fires an instrumentation event per column (another ~90 µs for a user). Here
    the columns' Python defaults fill what ``values`` leaves out, as a flush would, the row
    goes in with one cached INSERT, and the object is made from the same values without
    events, so later changes to it in the transaction are ordinary UPDATEs.
    IntegrityError propagates as from a flush.
    """
    plan = _insert_plan(model)
    row = dict(values)
    for key, default in plan.defaults:
        if key not in row:
            row[key] = default()
    unknown = row.keys() - plan.keys
    if unknown:
        raise TypeError(f"{model.__name__} has no column(s) {sorted(unknown)}")
    fetch(core(session), plan.insert, row)
    obj: _M = plan.manager.new_instance()
    instance_state(obj).dict.update(row)
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


@dataclass(frozen=True)
class _InsertPlan:
    insert: Any
    manager: Any
    keys: frozenset[str]
    # (attribute, zero-argument default) for every column: its Python-side default, else
    # None (NULL; a server-side default would not be read back into the object).
    defaults: tuple[tuple[str, Callable[[], Any]], ...]


_PLANS: dict[type[Any], _InsertPlan] = {}


def _insert_plan(model: type[Any]) -> _InsertPlan:
    plan = _PLANS.get(model)
    if plan is None:
        mapper = inspect(model)
        defaults: list[tuple[str, Callable[[], Any]]] = []
        for prop in mapper.column_attrs:
            column = prop.columns[0]
            if prop.key != column.key:
                raise TypeError(f"{model.__name__}.{prop.key} is mapped to column "
                                f"{column.key}; insert_row writes attribute names")
            defaults.append((prop.key, _default_of(column.default)))
        plan = _PLANS[model] = _InsertPlan(
            mapper.local_table.insert(), mapper.class_manager,
            frozenset(key for key, _ in defaults), tuple(defaults))
    return plan


def _default_of(default: Any) -> Callable[[], Any]:
    if default is not None and default.is_callable:
        return lambda: default.arg(None)
    value = default.arg if default is not None and default.is_scalar else None
    return lambda: value


# What a read that wants Core rows runs on: a unit of work's session, or the bare connection
# of ``Database.reader`` (no ORM session at all).
Reader = Session | Connection


def core(session: Reader) -> Connection:
    """The session's connection for Core statements, after flushing pending ORM changes
    (a bare connection is its own).

    ``session.execute`` costs two to three times as much as the same statement on the
    connection (ORM context, autoflush); hot read paths that want rows, not objects, use
    this. The flush keeps what they read consistent with the transaction's own changes.
    """
    if isinstance(session, Connection):
        return session
    session.flush()
    return session.connection()


def make_engine(url: str, *, pool_size: int = 5, echo: bool = False,
                busy_timeout_ms: int = 5000, prepared_statements: bool = True) -> Engine:
    """Create the engine; SQLite gets WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # A file's pool has no ceiling: each thread keeps one connection for as long as it
        # lives (app/sqlite_connections.py), so a bounded pool would make the thread after
        # the last slot wait for a connection no one gives back. A SQLite connection is a
        # file handle and its page cache, not a server's resource.
        pool: dict[str, Any] = ({"poolclass": NullPool} if _memory(url)
                                else {"pool_size": pool_size, "max_overflow": -1})
        engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False},
                               json_serializer=_json_dumps, json_deserializer=_json_loads,
                               **pool)
        _configure_sqlite(engine, busy_timeout_ms)
        return engine
    # psycopg calls these for json/jsonb values (SQLAlchemy hands them to its loaders).
    # prepare_threshold None: psycopg never prepares (database.prepared_statements; a pooler
    # in transaction mode, https://www.psycopg.org/psycopg3/docs/advanced/prepare.html).
    engine = create_engine(url, echo=echo, pool_size=pool_size, max_overflow=pool_size,
                           json_serializer=_json_dumps, json_deserializer=_json_loads,
                           connect_args={} if prepared_statements
                           else {"prepare_threshold": None})
    ping_after_idle(engine)  # not pool_pre_ping: a round trip per request (app/pool_ping.py)
    return engine


# Most JSON columns of a user (ims, photos, x509Certificates ...) hold an empty list: a page
# of 100 users decoded ~900 of them with json.loads, a tenth of the page's CPU. SQLite gives
# the text as str, psycopg as bytes (jsonb prints an empty array or object just so).
_EMPTY_JSON: dict[str | bytes, type[list[Any]] | type[dict[str, Any]]] = {
    "[]": list, "{}": dict, b"[]": list, b"{}": dict}


def _json_dumps(value: Any) -> str:
    """Python values as JSON text for the database; empty lists and objects without the
    encoder (a created user writes seven of them)."""
    if not value and isinstance(value, list | dict):
        return "[]" if isinstance(value, list) else "{}"
    return json.dumps(value)


def _json_loads(text: str | bytes) -> Any:
    """The database's JSON text as Python values; empty lists and objects without the
    parser, each a new one."""
    empty = _EMPTY_JSON.get(text)
    return empty() if empty is not None else json.loads(text)


def _memory(url: str) -> bool:
    return make_url(url).database in (None, "", ":memory:")


def register_fold(dbapi_connection: sqlite3.Connection) -> None:
    """Give this SQLite connection ``roster_lower()``, which ``app.sql.fold`` compiles to."""
    dbapi_connection.create_function("roster_lower", 1, _unicode_lower, deterministic=True)


def _unicode_lower(value: Any) -> Any:
    return fold_text(value) if isinstance(value, str) else value


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

    # Writers of all processes queue on one file lock before BEGIN IMMEDIATE, instead of
    # sleeping in SQLite's busy handler (app.sqlite_writers explains why).
    database = make_url(str(engine.url)).database
    queue = WriterQueue(None if _memory(str(engine.url)) else database,
                        busy_timeout_ms / 1000)
    install(engine, queue)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE takes the write lock up front: two writers queue on busy_timeout
        # instead of failing with "database is locked" on lock upgrade.
        if not _sqlite_write.get():
            # BEGIN and BEGIN IMMEDIATE go on the driver's connection: a statement through
            # SQLAlchemy costs ~3x as much (~40 µs for a SCIM create).
            conn.connection.dbapi_connection.execute("BEGIN")
            return
        dbapi_connection = conn.connection.dbapi_connection
        queue.acquire(dbapi_connection)
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
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


class Database:
    """Holds the engine and session factory of one app (or one CLI invocation)."""

    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False,
                 busy_timeout_ms: int = 5000, prepared_statements: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, echo=echo,
                                  busy_timeout_ms=busy_timeout_ms,
                                  prepared_statements=prepared_statements)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL readers run in autocommit: psycopg sends BEGIN and COMMIT as round trips
        # of their own, two of a SCIM lookup's five (``reader`` says why nothing is lost).
        self._read_engine = (self.engine.execution_options(isolation_level="AUTOCOMMIT")
                             if self.dialect == "postgresql" else self.engine)
        # SQLite files: each thread keeps its connection (app/sqlite_connections.py).
        self._held = (ThreadConnections(self.engine) if self.dialect == "sqlite"
                      and not _memory(url) else None)

    @classmethod
    def from_settings(cls, section: Mapping[str, Any]) -> Database:
        """The database of a ``[database]`` settings section (config/defaults.toml)."""
        return cls(section["url"], pool_size=section["pool_size"], echo=section["echo"],
                   busy_timeout_ms=section["sqlite_busy_timeout_ms"],
                   prepared_statements=section["prepared_statements"])

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.engine.dialect.name

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A read transaction on a bare connection, for views that read Core rows only.

        An ORM session costs ~60 µs per transaction against ~25 µs for the connection
        alone; SCIM lists (``userName eq`` lookups) read nothing else. Commits when the block
        ends, rolls back if it raises. On SQLite it runs beside a writer, as
        ``transaction(readonly=True)`` does, on the thread's own held connection
        (app/sqlite_connections.py) unless that one is busy.

        On PostgreSQL the connection is in autocommit, so each statement is its own
        transaction and no BEGIN or COMMIT crosses the network: a lookup makes three round
        trips instead of five. Under READ COMMITTED, PostgreSQL's default and Roster's, each
        statement of a transaction takes its own snapshot anyway
        (https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED),
        so the reads see exactly what they would have seen. Only a server whose
        ``default_transaction_isolation`` is stricter loses one snapshot across a list's
        count and page. Nothing may write here, and nothing here uses a server-side cursor.
        """
        token = _sqlite_write.set(False)
        try:
            held = self._idle_held()
            with (nullcontext(held) if held is not None else self._read_engine.connect()) \
                    as connection, connection.begin():
                yield connection
        finally:
            _sqlite_write.reset(token)

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """One unit of work: commit when the block ends, roll back if it raises.

        ``readonly`` only lets SQLite readers run beside a writer; it is not enforced.
        """
        token = _sqlite_write.set(not readonly)
        try:
            # On the thread's own SQLite connection when it is idle: the Session begins and
            # commits its transaction, and leaves the connection open at close.
            held = self._idle_held()
            with (self.sessionmaker(bind=held) if held is not None else self.sessionmaker()) \
                    as session, session.begin():
                yield session
        finally:
            _sqlite_write.reset(token)

    def _idle_held(self) -> Connection | None:
        # This thread's SQLite connection when it has none in use (app/sqlite_connections.py).
        return self._held.idle() if self._held is not None else None

    def dispose(self) -> None:
        """Close every pooled connection (and every thread's held one)."""
        if self._held is not None:
            self._held.close()
        self.engine.dispose()
