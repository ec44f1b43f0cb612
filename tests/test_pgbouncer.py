"""Roster on PostgreSQL behind a transaction-pooling PgBouncer (README, "Behind a pooler").

In transaction mode PgBouncer hands each transaction whichever server connection is free, so
a statement psycopg prepared on one server connection is unknown on the next (PgBouncer
before 1.21, Debian 12 ships 1.18). ``database.prepared_statements = false`` stops psycopg
from preparing. These tests need the suite's PostgreSQL server: they run in its PostgreSQL
pass (script/test), which has a real PgBouncer started in front of it here.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from app import create_app
from app.db import Database
from app.log_throttle import EveryInterval
from app.migrate import upgrade
from app.scim.recorder import flush as flush_recorder
from app.sql import fetch
from tests import pg_server
from tests.conftest import app_overrides, fresh_database_url, make_tenant

pytestmark = pytest.mark.skipif(
    not os.environ.get("ROSTER_TEST_PG_URL"),
    reason="needs the suite's PostgreSQL server: runs in the suite's PostgreSQL pass")

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
# Built once, as fetch requires.
_COUNT = sa.select(sa.func.count()).select_from(sa.table("pg_class"))


@pytest.fixture(scope="module")
def pooled_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database of the suite's server, reached through a PgBouncer in transaction
    mode (four server connections); PgBouncer is stopped afterwards."""
    direct = fresh_database_url(tmp_path_factory, "pgbouncer")
    upgrade(direct)
    url, root, process = pg_server.start_pgbouncer(direct)
    try:
        yield url
    finally:
        pg_server.stop_pgbouncer(root, process)


def test_scim_works_behind_a_transaction_pooling_pgbouncer(pooled_url):
    """Four clients at once, each creating, finding and deactivating users through SCIM: every
    statement runs often enough to be prepared, on whichever server connection is free."""
    overrides = app_overrides(pooled_url)
    overrides["database"] = {**overrides["database"], "prepared_statements": False}
    app = create_app(overrides)
    db: Database = app.extensions["roster.db"]
    try:
        tenant = make_tenant(db, "pooled")
        failures: list[str] = []

        def work(client_no: int) -> None:
            client = app.test_client()
            for i in range(10):
                name = f"pooled{client_no}-{i}@acme.example"
                created = client.post("/scim/v2/Users", headers=tenant.headers,
                                      json={"schemas": [USER], "userName": name})
                if created.status_code != 201:
                    failures.append(f"create {name}: {created.status_code} {created.data!r}")
                    continue
                found = client.get("/scim/v2/Users", headers=tenant.headers,
                                   query_string={"filter": f'userName eq "{name}"'})
                if found.status_code != 200 or found.get_json()["totalResults"] != 1:
                    failures.append(f"lookup {name}: {found.status_code} {found.data!r}")
                patched = client.patch(
                    f"/scim/v2/Users/{created.get_json()['id']}", headers=tenant.headers,
                    json={"schemas": [PATCH],
                          "Operations": [{"op": "replace", "value": {"active": False}}]})
                if patched.status_code != 200 or patched.get_json()["active"] is not False:
                    failures.append(f"deactivate {name}: {patched.status_code} {patched.data!r}")

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        listed = app.test_client().get("/scim/v2/Users", headers=tenant.headers,
                                       query_string={"filter": "active eq false", "count": 0})
        assert listed.get_json()["totalResults"] == 40
    finally:
        flush_recorder(app)
        db.dispose()


@pytest.mark.parametrize("prepared", [True, False])
def test_prepared_statements_setting_decides_whether_psycopg_prepares(prepared):
    """With database.prepared_statements a statement run eight times on one connection is
    prepared on the server (psycopg's threshold is five); without it nothing is."""
    db = Database(os.environ["ROSTER_TEST_PG_URL"], prepared_statements=prepared)
    try:
        with db.engine.connect() as connection:
            for _ in range(8):
                fetch(connection, _COUNT, {})
            count = connection.exec_driver_sql(
                "SELECT count(*) FROM pg_prepared_statements").scalar()
    finally:
        db.dispose()
    assert (count > 0) is prepared


def test_a_lost_prepared_statement_is_named_with_what_to_do(monkeypatch, caplog):
    """PostgreSQL's 'prepared statement ... does not exist' is recognised and logged with the
    setting to change (SCIM and /api log it before their 500); other errors are not."""
    import app.db_errors

    monkeypatch.setattr(app.db_errors, "_LOST_PREPARED_LOG", EveryInterval(60.0))
    db = Database(os.environ["ROSTER_TEST_PG_URL"])
    try:
        with db.engine.connect() as connection:
            with pytest.raises(sa.exc.DBAPIError) as lost:
                connection.exec_driver_sql("EXECUTE _pg3_0")
            connection.rollback()
            with pytest.raises(sa.exc.DBAPIError) as other:
                connection.exec_driver_sql("SELECT * FROM no_such_table")
    finally:
        db.dispose()
    assert app.db_errors.prepared_statement_lost(lost.value) is True
    assert "database.prepared_statements = false" in caplog.text
    assert app.db_errors.prepared_statement_lost(other.value) is False
