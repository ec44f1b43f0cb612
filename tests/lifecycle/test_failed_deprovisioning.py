"""A deprovisioning whose transaction fails leaves a record of the attempt (outcome "failed",
the error, a ``user:deprovision_failed`` audit event), written in a new transaction after the
rollback, through every path: SCIM PATCH and DELETE, the operator API. The failure is the
real database's: a trigger that refuses the revocation of the user's login sessions, or (on
PostgreSQL) a lock held by another connection."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from app.audit.verify import verify_chain
from app.db import FAILURE_RECORD_LOCK_WAIT_MS, Database, utcnow
from app.lifecycle import Trigger, deprovision_user
from app.models import OutboxEvent, User
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, Tenant, database_locked, make_tenant, rows
from tests.lifecycle.support import equip, roster
from tests.scim.support import PATCH_OP, Scim

REFUSAL = "injected: the sessions table refuses writes"
OKTA_OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]}


@contextmanager
def sessions_refuse_updates(db: Database) -> Iterator[None]:
    """The database itself refuses every UPDATE of login_sessions inside the block."""
    if db.dialect == "sqlite":
        create = [f"CREATE TRIGGER refuse BEFORE UPDATE ON login_sessions "
                  f"BEGIN SELECT RAISE(ABORT, '{REFUSAL}'); END"]
        drop = ["DROP TRIGGER refuse"]
    else:
        create = [f"CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ "
                  f"BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$",
                  "CREATE TRIGGER refuse BEFORE UPDATE ON login_sessions "
                  "FOR EACH ROW EXECUTE FUNCTION refuse()"]
        drop = ["DROP TRIGGER refuse ON login_sessions", "DROP FUNCTION refuse()"]
    with db.engine.begin() as conn:
        for statement in create:
            conn.execute(sa.text(statement))
    try:
        yield
    finally:
        with db.engine.begin() as conn:
            for statement in drop:
                conn.execute(sa.text(statement))


def _untouched(db: Database, user_id: str) -> None:
    user = rows(db, "SELECT status, active FROM users WHERE id = :i", i=user_id)[0]
    assert (user.status, bool(user.active)) == ("active", True)
    assert rows(db, "SELECT count(*) FROM login_sessions WHERE user_id = :i AND "
                    "revoked_at IS NULL", i=user_id)[0][0] == 2
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :i", i=user_id)[0][0] == 2
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.deprovisioned'"
                )[0][0] == 0


def _failed_record(db: Database, user_id: str) -> sa.Row:
    [record] = rows(db, "SELECT * FROM deprovision_records WHERE user_id = :i", i=user_id)
    assert record.outcome == "failed"
    assert record.revocation_committed_at is None
    for state in (record.state_before, record.state_after):  # SQLite gives JSON as text
        assert (json.loads(state) if isinstance(state, str) else state) == {
            "active": True, "status": "active"}
    [audit] = rows(db, "SELECT actor_type, request_id, data FROM audit_events WHERE action = "
                       "'user:deprovision_failed' AND subject_id = :i", i=user_id)
    assert audit.request_id == record.request_id
    return record


def _refused_once(client, db: Database, user_name: str) -> tuple[Tenant, Scim, str]:
    """An equipped user whose Okta deactivation the database refused once (a 500)."""
    tenant = make_tenant(db, "acme", "okta")
    scim = Scim(client, tenant)
    user_id = scim.create_user(user_name)["id"]
    equip(db, tenant, user_id)
    with sessions_refuse_updates(db):
        assert scim.patch(f"/Users/{user_id}", OKTA_OFF).status_code == 500
    return tenant, scim, user_id


@pytest.mark.parametrize(("body", "trigger", "status"), [
    (OKTA_OFF, "scim_active_false", 200), (None, "scim_delete", 204)])
def test_a_scim_deprovisioning_the_database_refuses_is_recorded_as_failed(
        client, db, body, trigger, status):
    """PATCH active=false or DELETE: a 500, nothing revoked, and a failed record with the
    database's error; the IdP's retry then deprovisions, and only that counts."""
    tenant = make_tenant(db, "acme", "okta")
    scim = Scim(client, tenant)
    user_id = scim.create_user("leaver@acme.example")["id"]
    equip(db, tenant, user_id)
    headers = {"X-Request-ID": "req-refused", "User-Agent": "Okta SCIM Client 1.0.0"}

    def take_out():
        if body is None:
            return scim.delete(f"/Users/{user_id}", headers=headers)
        return scim.patch(f"/Users/{user_id}", body, headers=headers)

    with sessions_refuse_updates(db):
        response = take_out()
    assert response.status_code == 500
    assert response.mimetype == "application/scim+json"
    assert REFUSAL not in response.get_data(as_text=True)  # no internals to the IdP
    _untouched(db, user_id)
    record = _failed_record(db, user_id)
    assert (record.trigger, record.request_id, record.actor_type, record.vendor) == (
        trigger, "req-refused", "scim_token", "okta")
    assert record.error.startswith("database error ")
    assert REFUSAL in record.error
    assert "UPDATE" not in record.error  # the error's first line, never the statement
    assert take_out().status_code == status
    records = rows(db, "SELECT outcome FROM deprovision_records WHERE user_id = :i "
                       "ORDER BY received_at", i=user_id)
    assert [r.outcome for r in records] == ["failed", "applied"]
    with db.transaction() as session:
        assert verify_chain(session, tenant.org.id).problem is None
        assert len(session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "user.deprovisioned")).all()) == 1


def test_failed_attempts_are_listed_apart_and_never_restored(client, db, database_url):
    """GET /deprovisions?outcome=failed lists the failed attempt, the CLI report marks it
    and counts only the applied one; reactivation restores from the applied record (its
    manual grant), not from the failed one."""
    tenant, scim, user_id = _refused_once(client, db, "twice@acme.example")
    assert scim.patch(f"/Users/{user_id}", OKTA_OFF).status_code == 200
    auditor = make_key(db, "auditor", tenant.org)
    failed = client.get("/api/v1/deprovisions?outcome=failed", headers=auditor.headers)
    assert [r["outcome"] for r in failed.get_json()["items"]] == ["failed"]
    applied = client.get("/api/v1/deprovisions?outcome=applied", headers=auditor.headers)
    assert [r["outcome"] for r in applied.get_json()["items"]] == ["applied"]
    bad = client.get("/api/v1/deprovisions?outcome=maybe", headers=auditor.headers)
    assert bad.status_code == 400
    report = roster(database_url, "audit", "deprovisions", "--org", "acme").output
    assert "deprovisionings: 1 " in report
    assert "FAILED: 1" in report
    assert report.count("FAILED") == 2  # the summary and the failed attempt's line
    on = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]}
    assert scim.patch(f"/Users/{user_id}", on).status_code == 200
    assert [g.source for g in rows(db, "SELECT source FROM grants WHERE user_id = :i",
                                   i=user_id)] == ["manual"]
    restored = rows(db, "SELECT outcome, restored_at FROM deprovision_records "
                        "WHERE user_id = :i ORDER BY received_at", i=user_id)
    assert [(r.outcome, r.restored_at is not None) for r in restored] == [
        ("failed", False), ("applied", True)]


def test_an_operator_deprovisioning_that_fails_is_recorded_with_its_reason(client, db):
    """POST /api/v1/users/{id}/deprovision: the failed record keeps the operator's reason."""
    tenant = make_tenant(db, "acme", "okta")
    user_id = Scim(client, tenant).create_user("op@acme.example")["id"]
    equip(db, tenant, user_id)
    admin = make_key(db, "admin", tenant.org)
    with sessions_refuse_updates(db):
        response = client.post(f"/api/v1/users/{user_id}/deprovision",
                               json={"reason": "left the company"}, headers=admin.headers)
    assert response.status_code == 500
    assert response.mimetype == "application/problem+json"
    _untouched(db, user_id)
    record = _failed_record(db, user_id)
    assert (record.trigger, record.reason, record.actor_type) == (
        "operator", "left the company", "api_key")


def test_a_deprovisioning_stuck_behind_a_lock_is_a_503_and_a_failed_record(app, client, db):
    """PostgreSQL: another transaction holds the sessions table; the IdP gets a retryable 503
    and the attempt is on record (README: "When the transaction fails ...")."""
    if db.dialect != "postgresql":
        pytest.skip("SQLite has one write lock: a held one stops the request before it starts")
    tenant = make_tenant(db, "acme", "okta")
    scim = Scim(client, tenant)
    user_id = scim.create_user("stuck@acme.example")["id"]
    equip(db, tenant, user_id)
    with database_locked(app, db, tables=("login_sessions",)):
        response = scim.patch(f"/Users/{user_id}", OKTA_OFF)
    assert response.status_code == 503
    _untouched(db, user_id)
    assert "LockNotAvailable" in _failed_record(db, user_id).error


def test_a_failed_attempt_has_no_receipt_and_exports_as_a_failure(client, db):
    """A receipt proves access was taken away: a failed attempt has none (409). In the OCSF
    export its audit event is a Failure of high severity, with the error."""
    tenant, _scim, user_id = _refused_once(client, db, "noreceipt@acme.example")
    record = _failed_record(db, user_id)
    auditor = make_key(db, "auditor", tenant.org)
    response = client.get(f"/api/v1/deprovisions/{record.id}/receipt", headers=auditor.headers)
    assert response.status_code == 409
    assert "failed attempt" in response.get_json()["detail"]
    from app.audit.export import AuditFilter, as_ocsf, iter_events

    with db.transaction() as session:
        [event] = [as_ocsf(e) for e in iter_events(session, AuditFilter(
            organization_id=tenant.org.id, action="user:deprovision_failed"))]
    assert (event["status"], event["status_id"], event["severity_id"]) == ("Failure", 2, 4)
    assert REFUSAL in event["status_detail"]


def test_a_failed_record_is_received_when_the_attempt_began(db, tenant, leaver):
    """An actor without a received_at (API, CLI): the failed record's received_at is when
    the deprovisioning began, not when the failure was recorded after the rollback."""
    import time

    from app.audit import Actor
    from app.lifecycle import Trigger, deprovision_user
    from app.models import User

    began = utcnow()
    with pytest.raises(RuntimeError), db.transaction() as session:
        deprovision_user(session, session.get(User, leaver.user_id),
                         Actor(type="operator", id="op-1"), trigger=Trigger.operator)
        time.sleep(1.0)
        raise RuntimeError("lock timeout, in effect")
    [record] = rows(db, "SELECT received_at FROM deprovision_records")
    received = record.received_at
    if isinstance(received, str):  # SQLite
        received = datetime.fromisoformat(received)
    assert received.replace(tzinfo=UTC) - began < timedelta(seconds=0.5)


def test_on_sqlite_the_failed_record_waits_only_briefly_for_a_held_lock(db, tenant, leaver,
                                                                         caplog):
    """SQLite: a deprovisioning that timed out on a held write lock is answered after that
    wait, not a second one: its failed record waits at most ``FAILURE_RECORD_LOCK_WAIT_MS``
    (in the writers' queue, then in SQLite's busy handler) and, unwritten, is logged; the
    connection keeps its busy timeout for its next transactions."""
    if db.dialect != "sqlite":
        pytest.skip("SQLite's write lock and busy timeout")
    busy = 1.0
    impatient = Database(db.url, busy_timeout_ms=int(busy * 1000))
    try:
        with impatient.transaction(readonly=True) as session:
            # Loaded beforehand: the deprovisioning's own first statement meets the lock.
            user = session.get(User, leaver.user_id)
        blocker = db.engine.connect()
        holding = blocker.begin()  # a Roster writer: its queue turn and SQLite's lock
        try:
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError, match="database is locked"), \
                    impatient.transaction() as session:
                deprovision_user(session, user, OPERATOR, trigger=Trigger.scim_active_false)
            took = time.monotonic() - started
        finally:
            holding.rollback()
            blocker.close()
        # The deprovisioning itself waits for the queue and then for SQLite (2 x busy);
        # the record used to wait as long again.
        assert took < 2 * busy + 2 * FAILURE_RECORD_LOCK_WAIT_MS / 1000 + 0.5
        assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
        [logged] = [r for r in caplog.records if r.name == "app.db"]
        assert logged.levelname == "ERROR"
        assert logged.getMessage() == ("could not record a failed transaction's attempt "
                                       "(_record_failure, after OperationalError)")
        with impatient.transaction() as session:  # this thread's connection, as before
            assert session.execute(sa.text("PRAGMA busy_timeout")).scalar() == busy * 1000
            assert deprovision_user(session, session.get(User, leaver.user_id), OPERATOR,
                                    trigger=Trigger.scim_active_false) is not None
    finally:
        impatient.dispose()
    assert [r.outcome for r in rows(db, "SELECT outcome FROM deprovision_records")] == [
        "applied"]
