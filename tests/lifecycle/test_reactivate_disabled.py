"""Reactivating a user whose directory is disabled: refused (409 / one CLI line), nothing written.

Before, `POST /api/v1/users/{id}/reactivate`, `roster lifecycle reactivate` and `roster
lifecycle restore` brought the user back, with grants, in a directory whose SCIM tokens no
longer work: the IdP could not take them out again. On PostgreSQL the reactivation holds the
directory's row FOR SHARE before the mapping lock and the user's row, so it cannot race a
disable either (the lock order of app/mapping/reevaluation.py).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.db import Database
from app.directory.directories import set_directory_status
from app.lifecycle import Trigger, deprovision_user
from app.models import Directory, User
from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import OPERATOR, Tenant, rows
from tests.lifecycle.support import add_user, disable_in_flight, roster
from tests.lockwait import held, started

REACTIVATE = "/api/v1/users/{}/reactivate"


def _set_status(db: Database, tenant: Tenant, status: str) -> None:
    with db.transaction() as session:
        directory = session.get(Directory, tenant.directory.id)
        assert directory is not None
        set_directory_status(session, directory, status, OPERATOR)


def _state(db: Database, user_id: str) -> tuple[str, bool]:
    [row] = rows(db, "SELECT status, active FROM users WHERE id = :u", u=user_id)
    return row.status, bool(row.active)


def _reactivations(db: Database) -> int:
    return rows(db, "SELECT count(*) FROM audit_events WHERE action = 'user:reactivate'")[0][0] \
        + rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.reactivated'")[0][0]


def _live_users(db: Database) -> list[sa.Row]:
    return rows(db, "SELECT user_name FROM users WHERE active OR status NOT IN "
                    "('deprovisioned', 'deleted')")


def test_api_reactivation_in_a_disabled_directory_is_409_and_writes_nothing(client, db,
                                                                            tenant, leaver):
    """409 problem JSON that says to enable the directory first; the user stays out, no
    grant, audit event or outbox event; once the directory is enabled, the same call works."""
    _set_status(db, tenant, "disabled")
    assert _state(db, leaver.user_id) == ("deprovisioned", False)
    key = make_key(db, "operator")
    before = rows(db, "SELECT count(*) FROM audit_events")[0][0]
    body = assert_problem(client.post(REACTIVATE.format(leaver.user_id), headers=key.headers),
                          409, "conflict")
    assert "disabled: enable it first" in body["detail"], body
    assert _state(db, leaver.user_id) == ("deprovisioned", False)
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=leaver.user_id)[0][0] \
        == 0
    assert rows(db, "SELECT action FROM audit_events ORDER BY id")[before:] == []
    assert _reactivations(db) == 0
    _set_status(db, tenant, "active")
    response = client.post(REACTIVATE.format(leaver.user_id), headers=key.headers)
    assert response.status_code == 200, response.get_json()
    assert _state(db, leaver.user_id) == ("active", True)


def test_cli_reactivation_in_a_disabled_directory_is_a_one_line_error(db, tenant, leaver,
                                                                      database_url):
    """`roster lifecycle reactivate` exits non-zero with one line; nothing changes."""
    _set_status(db, tenant, "disabled")
    result = roster(database_url, "lifecycle", "reactivate", "--org", "acme", "leaver",
                    ok=False)
    assert "disabled: enable it first" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert _state(db, leaver.user_id) == ("deprovisioned", False)
    assert _reactivations(db) == 0


def test_restoring_a_batch_of_a_disabled_directory_is_refused_whole(db, tenant, database_url):
    """`roster lifecycle restore` of a batch whose directory is disabled: one-line error, no
    user reactivated, the batch still restorable (not "skipped" user by user)."""
    ids = [add_user(db, tenant, f"u{i}") for i in range(20)]
    for user_id in ids[:6]:
        with db.transaction() as session:
            deprovision_user(session, session.get(User, user_id), OPERATOR,
                             trigger=Trigger.scim_active_false)
    [batch_id] = [r.id for r in rows(db, "SELECT id FROM deprovision_batches")]
    _set_status(db, tenant, "disabled")
    result = roster(database_url, "lifecycle", "restore", "--batch", batch_id, ok=False)
    assert "disabled: enable it first" in result.output, result.output
    assert _live_users(db) == []
    assert rows(db, "SELECT restored_at FROM deprovision_batches")[0][0] is None
    assert _reactivations(db) == 0
    _set_status(db, tenant, "active")
    # The disable's deprovisionings joined the open batch: all 20 come back.
    assert "20 user(s) reactivated" in roster(database_url, "lifecycle", "restore", "--batch",
                                              batch_id).output


def _deprovisioned(db: Database, user_id: str) -> None:
    with db.transaction() as session:
        deprovision_user(session, session.get(User, user_id), OPERATOR,
                         trigger=Trigger.operator)


def test_a_reactivation_sent_during_a_disable_waits_and_is_refused(app, db, tenant):
    """PostgreSQL: a disable in flight (not committed) when the operator reactivates a user
    it could not see (already out): the reactivation waits for the disable, then answers
    409 (before: 200 at once, and the user stayed active after the disable committed)."""
    if db.dialect != "postgresql":
        pytest.skip("row locks: SQLite has one writer at a time")
    add_user(db, tenant, "boss")  # the disable has a user of its own to deprovision
    user_id = add_user(db, tenant, "ann")
    _deprovisioned(db, user_id)
    key = make_key(db, "operator")
    with disable_in_flight(db, tenant):
        call, answer = started(db, lambda: app.test_client().post(
            REACTIVATE.format(user_id), headers=key.headers))
        waited = call.is_alive()
    call.join(30)
    response = answer["result"]
    assert response.status_code == 409, response.get_json()
    assert waited, "the reactivation did not wait for the disable holding its directory"
    assert _live_users(db) == []
    assert _reactivations(db) == 0


def test_a_disable_waits_for_an_operator_reactivation_in_flight(app, db, tenant):
    """PostgreSQL: a reactivation in flight (waiting for its user's row) when the disable
    starts: the disable waits for it, then deprovisions the reactivated user again (before:
    the disable did not see the user, committed at once, and the user stayed active)."""
    if db.dialect != "postgresql":
        pytest.skip("row locks: SQLite has one writer at a time")
    add_user(db, tenant, "boss")
    user_id = add_user(db, tenant, "ann")
    _deprovisioned(db, user_id)
    key = make_key(db, "operator")
    with held(db, "SELECT id FROM users WHERE id = :u FOR UPDATE", u=user_id):
        call, answer = started(db, lambda: app.test_client().post(
            REACTIVATE.format(user_id), headers=key.headers))
        # The reactivation and the disable wait.
        disabling, disabled = started(db, lambda: _set_status(db, tenant, "disabled"),
                                      waiters=2)
        waited = disabling.is_alive()
    call.join(30)
    disabling.join(30)
    assert not isinstance(disabled.get("result"), BaseException), disabled
    response = answer["result"]
    assert response.status_code == 200, response.get_json()
    assert _live_users(db) == [], "a user is active in the disabled directory"
    assert waited, "the disable did not wait for the reactivation holding its directory"
    assert rows(db, "SELECT trigger FROM deprovision_records WHERE user_id = :u ORDER BY "
                    "applied_at", u=user_id)[-1] == ("directory_disabled",)
