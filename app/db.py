"""Database handle, declarative Base, and the one-transaction-per-unit-of-work discipline
(engines themselves: app/engine.py; what an error means: app/db_errors.py).

Services take a ``Session`` and never commit; the caller (a view or a CLI command)
opens exactly one ``transaction()`` and it commits or rolls back as a whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Connection, DateTime, Executable, MetaData, Select, inspect
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Session, make_transient_to_detached, sessionmaker
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.types import TypeDecorator

from app.engine import SQLITE_LOCK_WAIT_MS, SQLITE_WRITE, make_engine, memory_url

# new_id: a UUID4 text (buffered OS randomness), the SCIM id and primary key of every row.
from app.ids import new_id as new_id
from app.sql import fetch
from app.sqlite_connections import ThreadConnections

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# session.info key: what to write in a new transaction when this one fails (after its rollback),
# as callables taking (session, error). See ``on_failure``.
_ON_FAILURE = "roster.on_failure"

log = logging.getLogger(__name__)
# SQLite: how long the record of a failed transaction waits for the write lock (the writers'
# queue, then SQLite's busy handler), in milliseconds. Its caller already waited, perhaps a
# whole busy timeout for a lock, and is answered only once the record is written or given up.
FAILURE_RECORD_LOCK_WAIT_MS = 250


def on_failure(session: Session, action: Callable[[Session, Exception], None]) -> None:
    """Have ``Database.transaction`` call ``action(session, error)`` in a new transaction
    when the one of ``session`` fails, after its rollback: the record that something was
    attempted and did not happen (a failed deprovisioning) cannot live in the transaction
    that is rolled back. Best effort: a failure of that second transaction is logged, and the
    first one's error is what the caller sees."""
    session.info.setdefault(_ON_FAILURE, []).append(action)


# JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.
JSONType = JSON().with_variant(JSONB(), "postgresql")


def as_stored(value: datetime) -> datetime:
    """An aware datetime as a :class:`UTCDateTime` column stores it (and reads it back): in
    UTC, past either end of what a datetime holds in UTC the extreme. Set on a new row, it
    makes the row say what a later read says (an answer echoing it, an audit record)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-01:00 (a since, an until, a
        # cursor, a filter): no UTC datetime holds it, and it was a 500. Every value it
        # is compared with lies after (before) it, as after (before) the extreme.
        return (datetime.min if value.year == datetime.min.year else datetime.max
                ).replace(tzinfo=UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else as_stored(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


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


def flush_if_pending(session: Session, kind: type[Any] | tuple[type[Any], ...]) -> None:
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


def _name(action: Callable[..., Any]) -> str:
    """An on_failure action's function name (a ``functools.partial`` names its function)."""
    function = getattr(action, "func", action)
    return str(getattr(function, "__qualname__", type(function).__name__))


class Database:
    """Holds the engine and session factory of one app (or one CLI invocation)."""

    def __init__(self, url: str, *, pool_size: int = 5, echo: bool = False,
                 busy_timeout_ms: int = 5000, prepared_statements: bool = True) -> None:
        self.url = url
        self.busy_timeout_ms = busy_timeout_ms
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
                      and not memory_url(url) else None)

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
        """Reads on a bare connection, for views that read Core rows only.

        An ORM session costs ~60 µs per transaction against ~25 µs for the connection
        alone; SCIM lists (``userName eq`` lookups) read nothing else. On SQLite it runs
        beside a writer, as ``transaction(readonly=True)`` does, on the thread's own held
        connection (app/sqlite_connections.py) unless that one is busy.

        Each statement is its own transaction, on both databases. On PostgreSQL the
        connection is in autocommit, so no BEGIN or COMMIT crosses the network: a lookup makes
        three round trips instead of five. On SQLite the thread's own connection runs
        ``fetch`` statements without BEGIN and COMMIT (``ThreadConnections.read``), which
        spares a lookup SQLAlchemy's transaction handling and two statements. Under READ COMMITTED,
        PostgreSQL's default and Roster's, each statement of a transaction takes its own
        snapshot anyway
        (https://www.postgresql.org/docs/current/transaction-iso.html#XACT-READ-COMMITTED),
        so the reads see exactly what they would have seen; SQLite's WAL gives each
        statement the database as last committed in the same way. Only a PostgreSQL server
        whose ``default_transaction_isolation`` is stricter loses one snapshot across a
        list's count and page. Nothing may write here, and nothing here uses a server-side
        cursor.
        """
        token = SQLITE_WRITE.set(False)
        try:
            with nullcontext(None) if self._held is None else self._held.read() as held:
                if held is not None:
                    yield held
                    return
            with self._read_engine.connect() as connection, connection.begin():
                yield connection
        finally:
            SQLITE_WRITE.reset(token)

    @contextmanager
    def transaction(self, *, readonly: bool = False,
                    lock_wait_ms: int | None = None) -> Iterator[Session]:
        """One unit of work: commit when the block ends, roll back if it raises.

        ``readonly`` only lets SQLite readers run beside a writer; it is not enforced.
        ``lock_wait_ms``: on SQLite, wait at most this long for the write lock instead of
        the busy timeout (this transaction only); PostgreSQL ignores it.
        """
        token = SQLITE_WRITE.set(not readonly)
        wait_token = SQLITE_LOCK_WAIT_MS.set(lock_wait_ms)
        info: dict[Any, Any] = {}
        try:
            # On the thread's own SQLite connection when it is idle: the Session begins and
            # commits its transaction, and leaves the connection open at close.
            held = self._idle_held()
            with (self.sessionmaker(bind=held) if held is not None else self.sessionmaker()) \
                    as session, session.begin():
                info = session.info
                yield session
        except Exception as error:
            actions = info.pop(_ON_FAILURE, None)
            if actions:
                self._after_failure(actions, error)
            raise
        finally:
            SQLITE_LOCK_WAIT_MS.reset(wait_token)
            SQLITE_WRITE.reset(token)

    def _after_failure(self, actions: list[Callable[[Session, Exception], None]],
                       error: Exception) -> None:
        # The failed transaction is rolled back and its session closed: the thread's SQLite
        # connection is idle again, a PostgreSQL one back in the pool. On SQLite the record
        # waits only briefly for the write lock: the caller (an IdP waiting for its 503)
        # would otherwise wait up to a second busy timeout (two: the writers' queue, then
        # SQLite's busy handler) for a record that is best effort anyway.
        try:
            with self.transaction(lock_wait_ms=min(self.busy_timeout_ms,
                                                   FAILURE_RECORD_LOCK_WAIT_MS)) as session:
                for action in actions:
                    action(session, error)
        except Exception:  # logged without values: the engines hide statement parameters
            log.exception("could not record a failed transaction's attempt (%s, after %s)",
                          ", ".join(_name(action) for action in actions),
                          type(error).__name__)

    def _idle_held(self) -> Connection | None:
        # This thread's SQLite connection when it has none in use (app/sqlite_connections.py).
        return self._held.idle() if self._held is not None else None

    def dispose(self) -> None:
        """Close every pooled connection (and every thread's held one)."""
        if self._held is not None:
            self._held.close()
        self.engine.dispose()


def delete_in_batches(db: Database, pick: Select[Any],
                      delete_of: Callable[[list[Any]], Executable], batch_size: int, *,
                      max_batches: int | None = None) -> tuple[int, bool]:
    """A retention delete a batch per transaction: ``pick`` selects at most ``batch_size``
    keys of due rows (on PostgreSQL skipping rows another transaction holds), and
    ``delete_of(keys)`` deletes them (re-checking what may have changed since). How many
    rows went, and whether ``max_batches`` stopped it with some left. Short transactions:
    neither SQLite's write lock nor PostgreSQL's row locks are held for a whole backlog."""
    pick = pick.limit(batch_size)
    if db.dialect == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    deleted = batches = 0
    while max_batches is None or batches < max_batches:
        with db.transaction() as session:
            keys = list(session.scalars(pick))
            if keys:
                deleted += session.execute(delete_of(keys)).rowcount or 0  # type: ignore[attr-defined]
        batches += 1
        if len(keys) < batch_size:
            return deleted, False
    return deleted, True
