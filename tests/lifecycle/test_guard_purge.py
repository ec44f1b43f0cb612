"""Mass-event guard (batch, alert, one-command restore) and purge after retention."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from app.audit.verify import verify
from app.db import utcnow
from app.lifecycle import (
    LifecyclePolicy,
    Trigger,
    delete_user,
    deprovision_directory_users,
    deprovision_user,
)
from app.lifecycle.batches import purge_deleted
from app.models import User
from tests.conftest import OPERATOR, rows
from tests.lifecycle.support import add_user, roster

POLICY = LifecyclePolicy(mass_window_seconds=600, mass_share_percent=10, mass_count=50,
                         mass_min_count=5)


def _users(db, tenant, n):
    return [add_user(db, tenant, f"u{i}") for i in range(n)]


def _deleted_old_and_recent(db, tenant, *, days_ago: int) -> tuple[str, str]:
    """Two SCIM-deleted users: one deleted ``days_ago`` days ago, one just now."""
    old, recent = _users(db, tenant, 2)
    for user_id in (old, recent):
        with db.transaction() as session:
            delete_user(session, session.get(User, user_id), OPERATOR)
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET deleted_at = :t WHERE id = :i"),
                     {"t": utcnow() - timedelta(days=days_ago), "i": old})
    return old, recent


def _deprovision_all(db, ids, policy=POLICY):
    for user_id in ids:
        with db.transaction() as session:
            deprovision_user(session, session.get(User, user_id), OPERATOR,
                             trigger=Trigger.scim_active_false, policy=policy)


def test_below_the_minimum_no_batch_is_opened(db, tenant):
    """Four deprovisionings are normal churn: no batch, no alert, access still removed."""
    ids = _users(db, tenant, 10)
    _deprovision_all(db, ids[:4])
    assert rows(db, "SELECT count(*) FROM deprovision_batches")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM users WHERE status = 'deprovisioned'")[0][0] == 4


def test_mass_deprovisioning_opens_one_batch_and_alerts_once(db, tenant):
    """Past the threshold every deprovisioning of the window joins one batch, one alert."""
    ids = _users(db, tenant, 20)
    _deprovision_all(db, ids[:7])
    batches = rows(db, "SELECT id, count FROM deprovision_batches")
    assert len(batches) == 1
    assert batches[0].count == 7
    assert rows(db, "SELECT count(*) FROM deprovision_records WHERE batch_id = :b",
                b=batches[0].id)[0][0] == 7
    alerts = rows(db, "SELECT payload FROM outbox_events WHERE type = "
                      "'directory.mass_deprovision'")
    assert len(alerts) == 1
    assert rows(db, "SELECT count(*) FROM users WHERE status = 'deprovisioned'")[0][0] == 7


def test_one_transaction_deprovisioning_many_users_counts_each_once(db, tenant):
    """A disabled directory deprovisions all its users in one transaction; the guard runs
    at its commit and the batch it opens holds, and counts, each of them once."""
    _users(db, tenant, 20)
    with db.transaction() as session:
        assert len(deprovision_directory_users(session, tenant.directory.id, OPERATOR)) == 20
    batches = rows(db, "SELECT id, count FROM deprovision_batches")
    assert [b.count for b in batches] == [20]
    assert rows(db, "SELECT count(*) FROM deprovision_records WHERE batch_id = :b",
                b=batches[0].id)[0][0] == 20
    [alert] = rows(db, "SELECT payload FROM outbox_events WHERE type = "
                       "'directory.mass_deprovision'")
    payload = alert.payload if isinstance(alert.payload, dict) else json.loads(alert.payload)
    assert payload["count"] == 20


def test_deprovisionings_of_a_rolled_back_savepoint_are_not_guarded(db, tenant):
    """A savepoint rolled back (a refused rule set) takes its records along: the guard at
    commit neither counts them nor fails on them."""
    ids = _users(db, tenant, 20)
    with db.transaction() as session:
        savepoint = session.begin_nested()
        for user_id in ids[:7]:
            deprovision_user(session, session.get(User, user_id), OPERATOR,
                             trigger=Trigger.scim_active_false, policy=POLICY)
        savepoint.rollback()
    assert rows(db, "SELECT count(*) FROM deprovision_batches")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM users WHERE status = 'active'")[0][0] == 20


def test_organization_policy_overrides_the_thresholds(db, tenant):
    """An organization may set its own minimum (policy.lifecycle.mass_min_count)."""
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE organizations SET policy = :p WHERE id = :i"),
                     {"p": '{"lifecycle": {"mass_min_count": 100}}', "i": tenant.org.id})
    _deprovision_all(db, _users(db, tenant, 10)[:7])
    assert rows(db, "SELECT count(*) FROM deprovision_batches")[0][0] == 0


def test_restore_batch_reactivates_everyone_in_one_command(db, tenant, database_url):
    """`roster lifecycle restore --batch ID` undoes a misconfiguration at once."""
    ids = _users(db, tenant, 20)
    _deprovision_all(db, ids[:6])
    batch_id = rows(db, "SELECT id FROM deprovision_batches")[0][0]
    listed = roster(database_url, "lifecycle", "batches", "--org", "acme")
    assert batch_id in listed.output
    result = roster(database_url, "lifecycle", "restore", "--batch", batch_id)
    assert "6 user(s) reactivated" in result.output
    assert rows(db, "SELECT count(*) FROM users WHERE status = 'active'")[0][0] == 20
    again = roster(database_url, "lifecycle", "restore", "--batch", batch_id, ok=False)
    assert "already restored" in again.output


def test_purge_removes_identity_data_after_retention_and_keeps_the_trail(db, tenant,
                                                                         database_url):
    """Only users deleted longer ago than the retention go; audit and records stay intact."""
    old, recent = _deleted_old_and_recent(db, tenant, days_ago=31)
    result = roster(database_url, "lifecycle", "purge")
    assert "purged 1 user(s)" in result.output
    assert [r.id for r in rows(db, "SELECT id FROM users")] == [recent]
    assert rows(db, "SELECT count(*) FROM deprovision_records WHERE user_id = :i",
                i=old)[0][0] == 1
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'user:purge'")[0][0] == 1
    with db.transaction() as session:
        assert all(report.ok for report in verify(session))


def test_the_worker_purges_after_retention_on_its_own(db, tenant, database_url):
    """`roster worker` purges users deleted longer ago than lifecycle.retention_days (its
    first round, then hourly) with the system as actor; a recent deletion stays."""
    old, recent = _deleted_old_and_recent(db, tenant, days_ago=8)
    result = roster(database_url, "worker", "--until-idle", "--worker-id", "w1",
                    ROSTER_LIFECYCLE__RETENTION_DAYS="7")
    assert "purged 1 user(s) deleted more than 7 day(s) ago" in result.output
    assert [r.id for r in rows(db, "SELECT id FROM users")] == [recent]
    [purge] = rows(db, "SELECT actor_type, actor_id, subject_id FROM audit_events "
                       "WHERE action = 'user:purge'")
    assert (purge.actor_type, purge.actor_id, purge.subject_id) == ("system", "worker:w1", old)
    again = roster(database_url, "worker", "--until-idle", ROSTER_LIFECYCLE__RETENTION_DAYS="7")
    assert "purged" not in again.output


def test_purge_function_respects_the_given_clock(db, tenant):
    """Retention is measured from deleted_at to now: nothing is purged a day early."""
    (user_id,) = _users(db, tenant, 1)
    with db.transaction() as session:
        delete_user(session, session.get(User, user_id), OPERATOR)
    with db.transaction() as session:
        assert purge_deleted(session, OPERATOR, retention_days=30,
                             now=utcnow() + timedelta(days=29)) == 0
    with db.transaction() as session:
        assert purge_deleted(session, OPERATOR, retention_days=30,
                             now=utcnow() + timedelta(days=31)) == 1


def test_failed_attempts_neither_count_towards_a_batch_nor_join_one(db, tenant):
    """Five failed attempts (nothing revoked) and four deprovisionings are four, below the
    minimum of five: no batch; and a batch opened later takes no failed record."""
    from app.lifecycle import record_failed_deprovisioning

    ids = _users(db, tenant, 20)
    for user_id in ids[10:15]:
        with db.transaction() as session:
            record_failed_deprovisioning(session, session.get(User, user_id), OPERATOR,
                                         trigger=Trigger.scim_active_false, error="x")
    _deprovision_all(db, ids[:4])
    assert rows(db, "SELECT count(*) FROM deprovision_batches")[0][0] == 0
    _deprovision_all(db, ids[4:6])
    assert rows(db, "SELECT count(*) FROM deprovision_batches")[0][0] == 1
    assert {(r.outcome, r.batch_id is None) for r in rows(
        db, "SELECT outcome, batch_id FROM deprovision_records")} == {
        ("failed", True), ("applied", False)}
