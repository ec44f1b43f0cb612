"""SQLite planner statistics: filtered SCIM lists run on the index the filter names."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager

import sqlalchemy as sa

from app.db import Database
from app.migrate import upgrade
from app.models import User
from app.planner import refresh_statistics, seed_statistics
from tests.conftest import make_tenant
from tests.statements import captured

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


def captured_selects(db: Database) -> AbstractContextManager[list[tuple[str, object]]]:
    """Every SELECT on the users table the engine runs meanwhile, with its parameters."""
    return captured(db.engine, lambda sql: sql.lstrip().upper().startswith("SELECT")
                    and "FROM users" in sql)


def _restore_nominal(db: Database) -> None:
    """Back to the nominal figures, on every connection, for the tests that follow."""
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM sqlite_stat1 WHERE tbl IN ('users', 'groups')")
        assert seed_statistics(conn) > 0


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
        _restore_nominal(db)


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
        _restore_nominal(db)


def _plan(engine: sa.Engine, sql: str, params: dict[str, object]) -> str:
    """SQLite's plan for ``sql``, with the statistics the database holds now. EXPLAIN does
    not look at the schema cookie, so a statement that reads the table comes first."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT count(*) FROM users").scalar()
        return " ".join(str(row[3]) for row in conn.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + sql, params))


_DEEP_PAGE = ("SELECT id FROM users WHERE directory_id = :d AND deleted_at IS NULL "
              "ORDER BY created_at, id LIMIT 100 OFFSET 50000")
_EXTERNAL_ID = ("SELECT id FROM users WHERE directory_id = :d AND deleted_at IS NULL "
                "AND external_id = :e ORDER BY created_at, id LIMIT 100")


def test_a_deep_start_index_page_walks_the_live_users_index(client, tenant, db, dialect):
    """The SCIM list's page statement is ordered by the partial index of live users, so a
    deep OFFSET skips entries in the index alone (no row read per skipped user). On
    PostgreSQL, whose OFFSET reads every skipped row, the page's ids come first from an
    index-only scan, run once (an InitPlan, whatever the statistics say), then the rows of
    those ids alone."""
    _create(client, tenant, 1)
    with captured_selects(db) as seen:
        response = client.get("/scim/v2/Users?startIndex=50001&count=100",
                              headers=tenant.headers)
    assert response.status_code == 200
    page = [(sql, params) for sql, params in seen if "OFFSET" in sql]
    assert len(page) == 1
    sql, params = page[0]
    assert "deleted_at IS NULL" in sql
    if dialect == "sqlite":
        plan = _plan(db.engine, sql, params)
        assert "ix_users_directory_live_created" in plan, plan
        assert "TEMP B-TREE" not in plan, plan
    else:
        with db.engine.connect() as conn:
            definition = conn.exec_driver_sql(
                "SELECT indexdef FROM pg_indexes "
                "WHERE indexname = 'ix_users_directory_live_created'").scalar()
            # The test database's users table is small and its statistics are whatever the
            # other tests and autovacuum left: a sequential scan can then cost less (seen
            # once under load). What is checked is that the statement can walk the index
            # and takes its ids in an InitPlan; with 50,000 users the index wins anyway.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
            plan = " ".join(row[0] for row in conn.exec_driver_sql("EXPLAIN " + sql, params))
        assert definition is not None
        assert "WHERE (deleted_at IS NULL)" in definition
        assert "InitPlan" in plan, plan
        assert "Index Only Scan using ix_users_directory_live_created" in plan, plan


def _raw_plan(conn: sqlite3.Connection, directory_id: str) -> str:
    conn.execute("SELECT count(*) FROM users").fetchall()  # sees a changed schema cookie
    return " ".join(str(row[3]) for row in conn.execute("EXPLAIN QUERY PLAN " + _DEEP_PAGE,
                                                         {"d": directory_id}))


def test_a_statistics_refresh_reaches_connections_opened_before_it(client, tenant, db,
                                                                    dialect):
    """A web worker's connections stay open for hours: statistics that ``roster worker``
    measures (or that a migration seeds) must reach them, not only new connections."""
    if dialect != "sqlite":
        assert refresh_statistics(db.engine, min_rows=1) is False  # PostgreSQL keeps its own
        return
    for i in range(4):
        _create(client, tenant, i)
    directory_id = tenant.directory.id
    # No statement cache: a cached EXPLAIN would keep the plan it was prepared with.
    other = sqlite3.connect(db.engine.url.database, isolation_level=None, cached_statements=0)
    try:
        assert "TEMP B-TREE" not in _raw_plan(other, directory_id)  # nominal: 10,000 users
        try:
            assert refresh_statistics(db.engine, min_rows=4) is True
            # Four users measured: sorting four rows is cheaper than the ordered index.
            assert "TEMP B-TREE" in _raw_plan(other, directory_id)
        finally:
            _restore_nominal(db)
        assert "TEMP B-TREE" not in _raw_plan(other, directory_id)
    finally:
        other.close()


def test_an_upgraded_database_gets_statistics_for_the_new_index(fresh_url, dialect):
    """A SQLite database migrated before the partial index, with measured statistics, gets
    a statistics row for it sized to the table; externalId lookups keep their index and
    deep pages take the new one. PostgreSQL: the upgrade replaces the index."""
    upgrade(fresh_url, "0009")
    old = Database(fresh_url)
    tenant = make_tenant(old, "acme")
    directory_id = tenant.directory.id
    # The users table as 0009 left it, for Core: the model's columns less those a later
    # migration added with a Python-side default, which an insert would name (0024-0026).
    later = {"shown_version", "shown_at", "groups_version", "groups_at", "access_version",
             "access_at"}
    users_0009 = sa.Table("users", sa.MetaData(), *(
        sa.Column(c.name, c.type, primary_key=c.primary_key,
                  default=c.default.arg if c.default is not None else None)
        for c in User.__table__.c if c.name not in later))
    with old.transaction() as session:
        # Core, naming the columns: the users table of 0009 lacks later ones (0015).
        session.execute(sa.insert(users_0009), [
            {"directory_id": directory_id, "organization_id": tenant.org.id,
             "user_name": f"u{i}@acme.test", "external_id": f"ext-{i}"} for i in range(60)])
    old.dispose()
    engine = sa.create_engine(fresh_url)
    try:
        if dialect == "sqlite":
            assert refresh_statistics(engine, min_rows=50) is True
        upgrade(fresh_url)
        if dialect != "sqlite":
            with engine.connect() as conn:
                names = {row[0] for row in conn.exec_driver_sql(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'users'")}
            assert "ix_users_directory_live_created" in names
            assert "ix_users_directory_created" not in names
            return
        with engine.connect() as conn:
            stats = dict(conn.exec_driver_sql(
                "SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'users'").all())
        assert "ix_users_directory_created" not in stats
        assert stats["ix_users_directory_live_created"].split()[:2] == ["60", "60"], stats
        params = {"d": directory_id, "e": "ext-7"}
        assert "ix_users_directory_external_id" in _plan(engine, _EXTERNAL_ID, params)
        deep = _plan(engine, _DEEP_PAGE, params)
        assert "ix_users_directory_live_created" in deep, deep
        assert "TEMP B-TREE" not in deep, deep
    finally:
        engine.dispose()


def test_measured_statistics_leave_no_index_without_a_row(client, tenant, db, dialect):
    """ANALYZE writes nothing for an empty index (the partial index of pending manager
    references); such an index gets a nominal row, or SQLite plans the table as half
    measured and the deep page above sorted its users again."""
    if dialect != "sqlite":
        assert refresh_statistics(db.engine, min_rows=1) is False  # PostgreSQL keeps its own
        return
    for i in range(4):
        _create(client, tenant, i)
    try:
        assert refresh_statistics(db.engine, min_rows=4) is True
        with db.engine.connect() as conn:
            indexes = {row[1] for row in conn.exec_driver_sql("PRAGMA index_list('users')")}
            stats = {row[0] for row in conn.exec_driver_sql(
                "SELECT idx FROM sqlite_stat1 WHERE tbl = 'users'")}
        assert "ix_users_pending_manager" in indexes
        assert indexes <= stats, indexes - stats
    finally:
        _restore_nominal(db)
