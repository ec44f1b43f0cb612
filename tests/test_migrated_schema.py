"""The schema the migrations build is the one the models describe, compared in full: column
types, nullability and server defaults, every index's definition (expression and partial
indexes included, which autogenerate skips or cannot reflect on SQLite), unique and CHECK
constraints, and foreign keys with their ON DELETE. test_migrations.py compares through
autogenerate without types, defaults or expression indexes."""

from __future__ import annotations

import re
import warnings
from typing import Any

import pytest
import sqlalchemy as sa

import app.models  # noqa: F401  (every table on Base.metadata)
from app.db import Base, Database
from app.migrate import downgrade, upgrade
from tests.conftest import fresh_database_url

# Differences on purpose or known, by database: (table, what, name).
EXPECTED = {
    # The server fills both (migrations 0014, 0020); the models leave them to it.
    "postgresql": {("outbox_events", "column", "txid"), ("outbox_events", "column", "cluster_id")},
    "sqlite": set(),
}


def _index_definitions(conn: sa.Connection) -> dict[tuple[str, str], str]:
    """Each index's definition as the database keeps it, whitespace and quotes evened."""
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql("SELECT tbl_name, name, sql FROM sqlite_master "
                                    "WHERE type = 'index' AND sql IS NOT NULL")
    else:
        rows = conn.exec_driver_sql("SELECT tablename, indexname, indexdef FROM pg_indexes "
                                    "WHERE schemaname = 'public'")
    return {(table, name): re.sub(r"\s+", " ", sql.replace('"', "")).strip()
            for table, name, sql in rows if table != "alembic_version"}


def _schema(url: str) -> dict[tuple[str, str, str], Any]:
    """(table, what, name) -> its description."""
    database = Database(url)  # on SQLite with roster_fold(), which the indexes call
    found: dict[tuple[str, str, str], Any] = {}
    try:
        with database.engine.connect() as conn, warnings.catch_warnings():
            # SQLite: expression indexes are not reflected (SAWarning); read from
            # sqlite_master below instead.
            warnings.simplefilter("ignore", sa.exc.SAWarning)
            inspector = sa.inspect(conn)
            for table in inspector.get_table_names():
                if table == "alembic_version":
                    continue
                for column in inspector.get_columns(table):
                    found[(table, "column", column["name"])] = (
                        str(column["type"]), column["nullable"], str(column["default"]))
                for unique in inspector.get_unique_constraints(table):
                    found[(table, "unique", unique["name"])] = tuple(unique["column_names"])
                for fk in inspector.get_foreign_keys(table):
                    found[(table, "foreign key", fk["name"])] = (
                        tuple(fk["constrained_columns"]), fk["referred_table"],
                        tuple(fk["referred_columns"]), fk["options"].get("ondelete"))
                for check in inspector.get_check_constraints(table):  # 0033's, on api_keys
                    found[(table, "check", check["name"])] = re.sub(
                        r"\s+", " ", check["sqltext"]).strip()
                primary = inspector.get_pk_constraint(table)
                found[(table, "primary key", primary["name"])] = \
                    tuple(primary["constrained_columns"])
            for (table, name), sql in _index_definitions(conn).items():
                found[(table, "index", name)] = sql
    finally:
        database.dispose()
    return found


def _differences(migrated: str, models: str, dialect: str) -> list[str]:
    ours, theirs = _schema(migrated), _schema(models)
    return [f"{key}: migrated {ours.get(key)!r}, models {theirs.get(key)!r}"
            for key in sorted(set(ours) | set(theirs))
            if ours.get(key) != theirs.get(key) and key not in EXPECTED[dialect]]


@pytest.fixture
def models_url(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    """A database made by the models (``create_all``), not by the migrations."""
    url = fresh_database_url(tmp_path_factory,
                             f"m{abs(hash(request.node.nodeid)) % 10**8}")
    database = Database(url)
    try:
        Base.metadata.create_all(database.engine)
    finally:
        database.dispose()
    return url


def test_migrated_schema_is_the_schema_the_models_create(fresh_url, models_url, dialect):
    """Upgraded from empty: every column, index, constraint and foreign key is the models'."""
    upgrade(fresh_url)
    assert _differences(fresh_url, models_url, dialect) == []


@pytest.mark.parametrize("revision", ["0009", "0019", "0023", "0029", "0030", "0032"])
def test_a_downgrade_and_upgrade_again_rebuild_the_same_schema(fresh_url, models_url,
                                                               dialect, revision):
    """Down to an older revision (tables rebuilt by batch operations on SQLite, indexes
    dropped and made again) and back to head: still exactly the models' schema."""
    upgrade(fresh_url)
    downgrade(fresh_url, revision)
    upgrade(fresh_url)
    assert _differences(fresh_url, models_url, dialect) == []
