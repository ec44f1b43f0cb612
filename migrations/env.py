"""Alembic environment: the URL comes from app.migrate.alembic_config (never from a file)."""

from __future__ import annotations

import logging
from typing import Any

from alembic import context
from sqlalchemy import Connection, create_engine, event, pool

import app.models  # noqa: F401  (registers every table on Base.metadata)
from app.db import Base
from app.engine import create_private_sqlite_file, register_fold
from app.planner import seed_statistics

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connectable = config.attributes.get("connection")
    if connectable is not None:
        _run(connectable)
        return
    url = config.get_main_option("sqlalchemy.url")
    create_private_sqlite_file(url)  # a first migration creates the file: owner-only
    engine = create_engine(url, poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # roster_lower(), which the userName and displayName indexes use (app.sql.fold).
    register_fold(dbapi_connection)
    # pysqlite opens a transaction only before INSERT/UPDATE/DELETE: every CREATE, ALTER
    # and DROP before the first of them committed on its own, so a migration that failed
    # half-way (a lock timeout, an index an operator added) left its first statements
    # applied and the revision unchanged, and each later `db upgrade` failed on them
    # ("duplicate column name"). SQLAlchemy emits BEGIN instead (_sqlite_begin).
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE: the write lock from the start, before Alembic reads the revision, so a
    # second `roster db upgrade` waits (busy timeout) and then finds the work done.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


# PostgreSQL: a transaction-level advisory lock that every upgrade and downgrade takes
# before Alembic reads the revision: two nodes that migrate one database at start run one
# after the other, and the second finds the work done (before, it re-ran the migrations
# behind the first one's locks and failed on what they had created).
MIGRATION_LOCK = 0x726F737465724D47  # "rosterMG"
log = logging.getLogger("roster.migrate")


def _serialize_postgresql(connection: Connection) -> None:
    if connection.exec_driver_sql(
            f"SELECT pg_try_advisory_xact_lock({MIGRATION_LOCK})").scalar():
        return
    log.warning("another `roster db upgrade` (or downgrade) is migrating this database; "
                "waiting for it to finish")
    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")


# PostgreSQL: how long a migration waits for a table lock before it gives up (and rolls
# back). ALTER TABLE queues an exclusive lock request behind any open transaction on the
# table, and every later query of that table queues behind the request: one session left
# idle in a transaction froze all SCIM traffic for as long as it stayed open.
LOCK_TIMEOUT = "10s"


def _run(connection) -> None:
    # One transaction for the whole run on both databases (Alembic's default for SQLite
    # is none): a failed upgrade leaves the schema and the revision as they were.
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True, transactional_ddl=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            _serialize_postgresql(connection)
            # Inside the migrations' transaction (LOCAL: it ends with it). Run before
            # begin_transaction, it would open a transaction Alembic then never commits.
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        context.run_migrations()
        if connection.dialect.name == "sqlite" and config.attributes.get("seed_statistics"):
            # In the same transaction: an upgrade that commits has its statistics too.
            seed_statistics(connection)


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
