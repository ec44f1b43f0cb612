"""The purge of users SCIM-deleted past the retention (`roster worker`, hourly) racing an
operator's reactivation on another node, and a second worker's purge (PostgreSQL).

The purge read the users past the retention without locking them, then wrote its audit
records, moved their reports' versions and deleted them by id. A reactivation committing
in between (the purge waiting for a report's row another write held) was undone: the user
the operator had just brought back, answered 200, was deleted with its grants. And two
workers purging at once both wrote ``user:purge`` for the same users.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.db import Database, utcnow
from app.lifecycle.batches import purge_deleted
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, Tenant, rows
from tests.lockwait import held, in_flight, started
from tests.scim.support import ENTERPRISE, Scim

REACTIVATE = "/api/v1/users/{}/reactivate"


@pytest.fixture
def postgres_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("row locks and concurrent writers are PostgreSQL's (SQLite has one)")


def _deleted_manager(client, db: Database, tenant: Tenant) -> tuple[str, str]:
    """A manager SCIM-deleted 31 days ago (retention 30) and its live report: their ids."""
    scim = Scim(client, tenant)
    boss = scim.create_user("boss@acme.example", externalId="ext-boss")["id"]
    report = scim.create_user("rep@acme.example", externalId="ext-rep", **{
        ENTERPRISE: {"manager": {"value": boss}}})["id"]
    assert scim.delete(f"/Users/{boss}").status_code == 204
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE users SET deleted_at = %(t)s WHERE id = %(u)s",
                             {"t": utcnow() - timedelta(days=31), "u": boss})
    return boss, report


def _purge(db: Database) -> int:
    with db.transaction() as session:
        return purge_deleted(session, OPERATOR, retention_days=30)


def _purge_records(db: Database, user_id: str) -> int:
    return rows(db, "SELECT count(*) FROM audit_events WHERE action = 'user:purge' "
                    "AND subject_id = :u", u=user_id)[0][0]


@pytest.mark.usefixtures("postgres_only")
def test_a_user_reactivated_while_the_purge_runs_stays(app, client, db, tenant):
    """The purge has read the manager past the retention and waits for its report's row
    (a write holds it); an operator reactivates the manager meanwhile. Either the
    reactivation comes first and the manager stays, unpurged, or the purge does and the
    reactivation is a 404: never a 200 for a user then deleted."""
    boss, report = _deleted_manager(client, db, tenant)
    key = make_key(db, "operator")
    with held(db, "SELECT id FROM users WHERE id = :r FOR UPDATE", r=report):
        purge, purged = started(db, lambda: _purge(db))
        reactivation, answered = started(db, lambda: app.test_client().post(
            REACTIVATE.format(boss), headers=key.headers), waiters=2)
    purge.join(30)
    reactivation.join(30)
    assert not isinstance(purged["result"], BaseException), purged
    status = answered["result"].status_code
    left = rows(db, "SELECT status FROM users WHERE id = :u", u=boss)
    if status == 200:
        assert [r.status for r in left] == ["active"], "reactivated (200), then purged"
        assert (purged["result"], _purge_records(db, boss)) == (0, 0)
    else:
        assert status == 404, answered["result"].get_json()
        assert (left, purged["result"], _purge_records(db, boss)) == ([], 1, 1)
    assert rows(db, "SELECT count(*) FROM users WHERE id = :u", u=report)[0][0] == 1


@pytest.mark.usefixtures("postgres_only")
def test_two_workers_purging_at_once_record_each_purge_once(client, db, tenant):
    """Worker A's purge has deleted the manager and not committed yet when worker B's
    starts: B purges nothing (the rows A holds are A's), and the log says purged once."""
    boss, _report = _deleted_manager(client, db, tenant)
    with in_flight(db, lambda session: purge_deleted(session, OPERATOR, retention_days=30)):
        second, outcome = started(db, lambda: _purge(db))
    second.join(30)
    assert outcome["result"] == 0, outcome
    assert _purge_records(db, boss) == 1
    assert rows(db, "SELECT count(*) FROM users WHERE id = :u", u=boss)[0][0] == 0
