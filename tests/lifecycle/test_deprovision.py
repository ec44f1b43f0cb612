"""Deprovisioning through the lifecycle function: revocation, grants, record, events."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.audit import Actor
from app.db import utcnow
from app.lifecycle import Trigger, delete_user, deprovision_user, reactivate_user
from app.models import User
from tests.conftest import rows

SCIM_ACTOR = Actor(type="directory_token", id="tok-1", request_id="req-1", ip="10.0.0.9",
                   user_agent="Okta SCIM Client 1.0.0", dialect="okta")


def _deprovision(db, user_id, trigger=Trigger.scim_active_false, actor=SCIM_ACTOR):
    with db.transaction() as session:
        user = session.get(User, user_id)
        return deprovision_user(session, user, actor, trigger=trigger)


@pytest.mark.parametrize("trigger", list(Trigger))
def test_deprovisioning_revokes_sessions_tokens_and_grants(db, tenant, leaver, trigger):
    """Every trigger takes the user out and revokes every session, token and grant at once."""
    rec = _deprovision(db, leaver.user_id, trigger)
    user = rows(db, "SELECT status, active FROM users WHERE id = :i", i=leaver.user_id)[0]
    assert (user.status, bool(user.active)) == ("deprovisioned", False)
    assert rows(db, "SELECT count(*) FROM login_sessions WHERE user_id = :i "
                    "AND revoked_at IS NULL", i=leaver.user_id)[0][0] == 0
    assert rows(db, "SELECT count(*) FROM issued_tokens WHERE user_id = :i "
                    "AND revoked_at IS NULL", i=leaver.user_id)[0][0] == 0
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :i", i=leaver.user_id)[0][0] == 0
    stored = rows(db, "SELECT * FROM deprovision_records WHERE id = :i", i=rec.id)[0]
    assert stored.trigger == trigger.value
    assert (stored.sessions_revoked, stored.tokens_revoked, stored.grants_removed) == (2, 3, 2)
    assert stored.revocation_committed_at is not None
    assert stored.latency_ms is not None
    assert stored.latency_ms >= 0


def test_record_carries_every_field_of_the_request(db, tenant, leaver):
    """The record names subject, directory, vendor, dialect, actor, request and states."""
    received = utcnow() - timedelta(milliseconds=20)
    actor = Actor(type="directory_token", id="tok-1", request_id="req-7", ip="10.0.0.9",
                  user_agent="Okta SCIM Client 1.0.0", received_at=received, dialect="okta")
    rec = _deprovision(db, leaver.user_id, actor=actor)
    r = rows(db, "SELECT * FROM deprovision_records WHERE id = :i", i=rec.id)[0]
    assert (r.user_id, r.scim_id, r.external_id, r.user_name) == (
        leaver.user_id, leaver.user_id, "ext-leaver", "leaver")
    assert (r.directory_id, r.vendor, r.dialect) == (tenant.directory.id, "okta", "okta")
    assert (r.actor_type, r.actor_id, r.request_id, r.source_ip, r.user_agent) == (
        "directory_token", "tok-1", "req-7", "10.0.0.9", "Okta SCIM Client 1.0.0")
    assert r.outcome == "applied"
    assert r.error is None
    assert r.latency_ms >= 20
    assert rec.state_before["active"] is True
    assert len(rec.state_before["grants"]) == 2
    assert rec.state_after == {"active": False, "status": "deprovisioned", "grants": []}


def test_audit_and_outbox_events_are_written_in_the_same_transaction(db, tenant, leaver):
    """user.deprovisioned, grant.removed and session.revoked reach the outbox and the log."""
    rec = _deprovision(db, leaver.user_id)
    types = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :i "
                                      "ORDER BY id", i=leaver.user_id)]
    assert types.count("grant.removed") == 2
    assert types.count("session.revoked") == 2
    assert types[-1] == "user.deprovisioned"
    actions = [r.action for r in rows(db, "SELECT action FROM audit_events WHERE "
                                          "organization_id = :o ORDER BY seq", o=tenant.org.id)]
    # Then, in the commit stamp's own transaction, the seal of that stamp.
    assert actions[-5:] == ["grant:remove", "grant:remove", "session:revoke", "user:deprovision",
                            "deprovision_record:stamp"]
    event_id = rows(db, "SELECT event_id FROM outbox_events WHERE type = 'user.deprovisioned'")
    assert event_id[0][0] == rec.event_id


def test_leaver_event_names_manager_units_and_roles(db, tenant, leaver):
    """The portal gets the manager and the units and roles held, for the hand-off."""
    _deprovision(db, leaver.user_id)
    from sqlalchemy import select

    from app.models import OutboxEvent
    with db.transaction() as session:
        payload = session.scalars(select(OutboxEvent.payload).where(
            OutboxEvent.type == "user.deprovisioned")).one()
    assert payload["manager"]["user_id"] == leaver.manager_id
    assert payload["manager"]["user_name"] == "leaver-boss"
    assert [u["id"] for u in payload["units"]] == [leaver.unit_id]
    assert len(payload["roles"]) == 2
    assert payload["trigger"] == "scim_active_false"


def test_deprovisioning_twice_changes_nothing_more(db, tenant, leaver):
    """A repeated active=false is a no-op: no second record, no second event."""
    assert _deprovision(db, leaver.user_id) is not None
    assert _deprovision(db, leaver.user_id) is None
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 1
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.deprovisioned'"
                )[0][0] == 1


def test_delete_is_a_soft_delete_after_deprovisioning(db, tenant, leaver):
    """SCIM DELETE deprovisions, then marks the row deleted; identity data stays until purge."""
    with db.transaction() as session:
        rec = delete_user(session, session.get(User, leaver.user_id), SCIM_ACTOR)
    assert rec is not None
    assert rec.trigger == "scim_delete"
    user = rows(db, "SELECT status, deleted_at, user_name FROM users WHERE id = :i",
                i=leaver.user_id)[0]
    assert user.status == "deleted"
    assert user.deleted_at is not None
    assert user.user_name == "leaver"


def test_reactivation_restores_manual_grants_and_same_id(db, tenant, leaver):
    """active=true brings the user back with the same id and the manual grant restored."""
    _deprovision(db, leaver.user_id)
    with db.transaction() as session:
        reactivate_user(session, session.get(User, leaver.user_id), SCIM_ACTOR)
    user = rows(db, "SELECT status, active FROM users WHERE id = :i", i=leaver.user_id)[0]
    assert (user.status, bool(user.active)) == ("active", True)
    grants = rows(db, "SELECT source FROM grants WHERE user_id = :i", i=leaver.user_id)
    # Rule grants come back only through the current mapping (no rules exist here).
    assert [g.source for g in grants] == ["manual"]
    assert rows(db, "SELECT restored_at FROM deprovision_records")[0][0] is not None
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.reactivated'"
                )[0][0] == 1


def test_reactivation_after_delete_clears_the_soft_delete(db, tenant, leaver):
    """Re-creating within retention (Entra's restore) brings back the deleted user."""
    with db.transaction() as session:
        delete_user(session, session.get(User, leaver.user_id), SCIM_ACTOR)
    with db.transaction() as session:
        from app.lifecycle import find_restorable
        user = find_restorable(session, tenant.directory.id, "ext-leaver", "LEAVER")
        assert user is not None
        assert user.id == leaver.user_id
        reactivate_user(session, user, SCIM_ACTOR)
    user = rows(db, "SELECT status, deleted_at FROM users WHERE id = :i", i=leaver.user_id)[0]
    assert user.status == "active"
    assert user.deleted_at is None


def test_disabling_a_directory_deprovisions_its_active_users(db, tenant, leaver):
    """deprovision_directory_users takes out every live user, trigger directory_disabled."""
    from app.lifecycle import deprovision_directory_users

    with db.transaction() as session:
        records = deprovision_directory_users(session, tenant.directory.id, SCIM_ACTOR)
    assert len(records) == 2  # the leaver and their manager
    assert {r.trigger for r in records} == {"directory_disabled"}
    assert rows(db, "SELECT count(*) FROM users WHERE status = 'active'")[0][0] == 0


def test_a_failed_deprovisioning_leaves_a_failed_record_and_nothing_half_done(db, tenant,
                                                                             leaver):
    """An error mid-way rolls everything back; the failure itself is then recorded, in a
    transaction of its own, by the transaction that failed (app/db.py on_failure)."""
    with pytest.raises(RuntimeError), db.transaction() as session:
        deprovision_user(session, session.get(User, leaver.user_id), SCIM_ACTOR,
                         trigger=Trigger.scim_active_false)
        raise RuntimeError("database went away\nsecond line")
    assert rows(db, "SELECT count(*) FROM login_sessions WHERE revoked_at IS NOT NULL"
                )[0][0] == 0
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :i", i=leaver.user_id
                )[0][0] == 2
    stored = rows(db, "SELECT outcome, error, revocation_committed_at FROM "
                      "deprovision_records")
    assert [(s.outcome, s.error) for s in stored] == [
        ("failed", "RuntimeError: database went away")]
    assert stored[0].revocation_committed_at is None
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = "
                    "'user:deprovision_failed'")[0][0] == 1


def test_a_failure_after_an_idempotent_deprovisioning_records_nothing(db, tenant, leaver):
    """A user already out is not deprovisioned again, so its transaction's failure is no
    failed deprovisioning."""
    _deprovision(db, leaver.user_id)
    with pytest.raises(RuntimeError), db.transaction() as session:
        assert deprovision_user(session, session.get(User, leaver.user_id), SCIM_ACTOR,
                                trigger=Trigger.scim_active_false) is None
        raise RuntimeError("unrelated")
    assert [r.outcome for r in rows(db, "SELECT outcome FROM deprovision_records")] == [
        "applied"]


def test_a_deprovisioning_refused_on_purpose_is_no_failure(db, tenant, leaver):
    """A domain rule or a 4xx that rolls a deprovisioning back (a refused mapping apply, an
    invalid request) is the caller's answer, not a failed deprovisioning: nothing recorded."""
    from app.errors import Conflict
    from app.scim.errors import ScimError

    for error in (Conflict("too many losses"), ScimError(400, "bad value", "invalidValue")):
        with pytest.raises(type(error)), db.transaction() as session:
            deprovision_user(session, session.get(User, leaver.user_id), SCIM_ACTOR,
                             trigger=Trigger.scim_active_false)
            raise error
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 0
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = "
                    "'user:deprovision_failed'")[0][0] == 0


def test_leaver_event_names_no_manager_that_scim_deleted(db, tenant, leaver):
    """A manager deleted over SCIM first is no one to hand approvals to: manager is null
    (its reports' SCIM `manager` leaves it out too; its userName may be a placeholder)."""
    with db.transaction() as session:
        delete_user(session, session.get(User, leaver.manager_id), SCIM_ACTOR)
    _deprovision(db, leaver.user_id)
    from sqlalchemy import select

    from app.models import OutboxEvent
    with db.transaction() as session:
        payloads = session.scalars(select(OutboxEvent.payload).where(
            OutboxEvent.type == "user.deprovisioned")).all()
    assert {p["user_id"]: p["manager"] for p in payloads}[leaver.user_id] is None
