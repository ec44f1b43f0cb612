"""Alembic environment: the URL comes from app.migrate.alembic_config (never from a file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, event, pool

import app.models  # noqa: F401  (registers every table on Base.metadata)
from app.db import Base
from app.engine import register_fold

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
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    if engine.dialect.name == "sqlite":
        # roster_lower(), which the userName and displayName indexes use (app.sql.fold).
        event.listen(engine, "connect", lambda dbapi, _record: register_fold(dbapi))
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


# PostgreSQL: how long a migration waits for a table lock before it gives up (and rolls
# back). ALTER TABLE queues an exclusive lock request behind any open transaction on the
# table, and every later query of that table queues behind the request: one session left
# idle in a transaction froze all SCIM traffic for as long as it stayed open.
LOCK_TIMEOUT = "10s"


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Inside the migrations' transaction (LOCAL: it ends with it). Run before
            # begin_transaction, it would open a transaction Alembic then never commits.
            connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
