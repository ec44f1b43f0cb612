"""SQLite planner statistics: filtered SCIM lists run on the index the filter names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from app.db import Database
from app.planner import refresh_statistics, seed_statistics

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@contextmanager
def captured_selects(db: Database) -> Iterator[list[tuple[str, object]]]:
    """Every SELECT on the users table the engine runs meanwhile, with its parameters."""
    seen: list[tuple[str, object]] = []

    def _capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "FROM users" in statement:
            seen.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", _capture)
    try:
        yield seen
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", _capture)


def _create(client, tenant, i: int) -> None:
    body = {"schemas": [USER], "userName": f"u{i}@acme.test", "externalId": f"ext-{i}"}
    assert client.post("/scim/v2/Users", json=body, headers=tenant.headers).status_code == 201


def _external_id_plan(client, tenant, db, dialect) -> str | None:
    """SQLite's plan for the list query behind ``externalId eq`` (None on PostgreSQL)."""
    with captured_selects(db) as seen:
        response = client.get('/scim/v2/Users?filter=externalId eq "ext-1"', headers=tenant.headers)
    assert response.status_code == 200
    page = [(sql, params) for sql, params in seen if "external_id" in sql and "LIMIT" in sql]
    assert len(page) == 1
    if dialect != "sqlite":
        return None
    sql, params = page[0]
    with db.engine.connect() as conn:
        return " ".join(str(row[3]) for row in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + sql, params))


def test_an_external_id_lookup_uses_its_index_not_the_creation_order(client, tenant, db, dialect):
    """The list query behind ``externalId eq`` searches (directory_id, external_id) on SQLite."""
    for i in range(3):
        _create(client, tenant, i)
    plan = _external_id_plan(client, tenant, db, dialect)
    if plan is None:
        with db.engine.connect() as conn:  # PostgreSQL keeps its own statistics
            assert seed_statistics(conn) == 0
        return
    assert "ix_users_directory_external_id" in plan, plan


def test_statistics_measured_before_external_ids_arrive_keep_the_lookup_index(
        client, tenant, db, dialect):
    """ANALYZE while every externalId is NULL must not rate the lookup index useless."""
    if dialect != "sqlite":
        assert refresh_statistics(db.engine) is False  # PostgreSQL keeps its own
        return
    for i in range(50):
        body = {"schemas": [USER], "userName": f"n{i}@acme.test"}
        assert client.post("/scim/v2/Users", json=body,
                           headers=tenant.headers).status_code == 201
    # Fewer users than MIN_MEASURED_ROWS: the nominal figures stay, the index is used.
    assert refresh_statistics(db.engine) is False
    plan = _external_id_plan(client, tenant, db, dialect)
    assert "ix_users_directory_external_id" in plan, plan
    try:
        assert refresh_statistics(db.engine, min_rows=50) is True
        with db.engine.connect() as conn:
            stat = conn.exec_driver_sql("SELECT stat FROM sqlite_stat1 "
                                        "WHERE idx = 'ix_users_directory_external_id'").scalar()
        assert stat.split()[0] == "50", stat
        assert int(stat.split()[-1]) <= 10, stat  # measured 50 (all NULL), capped
    finally:
        with db.engine.begin() as conn:  # back to the nominal figures for the other tests
            conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl IN ('users', 'groups')")
            assert seed_statistics(conn) > 0


def test_measured_statistics_replace_the_nominal_ones_once_there_are_users(client, tenant, db,
                                                                              dialect):
    """refresh_statistics runs ANALYZE on SQLite once users exist, and never on an empty table."""
    if dialect != "sqlite":
        assert refresh_statistics(db.engine) is False
        return
    assert refresh_statistics(db.engine) is False  # no users yet: keep the nominal figures
    for i in range(4):
        _create(client, tenant, i)
    assert refresh_statistics(db.engine) is False  # 4 users are below MIN_MEASURED_ROWS
    try:
        assert refresh_statistics(db.engine, min_rows=4) is True
        with db.engine.connect() as conn:
            stat = conn.exec_driver_sql(
                "SELECT stat FROM sqlite_stat1 WHERE idx = 'ix_users_directory_external_id'"
            ).scalar()
        assert stat is not None
        assert stat.split()[0] == "4"
    finally:
        with db.engine.begin() as conn:  # back to the nominal figures for the other tests
            conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl IN ('users', 'groups')")
            assert seed_statistics(conn) > 0
