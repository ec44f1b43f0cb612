"""Two deprovisionings of one user at once (PostgreSQL): the second finds the user out and
writes nothing; no second record, ``user.deprovisioned`` or ``user:deprovision``.

The CLI and a directory's disable read their users without a lock and then lock each row in
``deprovision_user``. The check "already out?" was made on the object as first read: a
deprovisioning that committed while they waited for the row (an IdP's ``active=false``, an
operator's API call) went unseen, and the user was taken out a second time, its record
saying it was active before.
"""

from __future__ import annotations

import json

import pytest

from app.lifecycle import Trigger, deprovision_user, reactivate_user
from app.models import User
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, rows
from tests.lifecycle.support import make_leaver, roster
from tests.lockwait import in_flight, started


def _deprovision_in_flight(db, user_id: str):
    """An operator's deprovisioning of the user, holding its row until the block ends."""
    return in_flight(db, lambda s: deprovision_user(s, s.get(User, user_id), OPERATOR,
                                                    trigger=Trigger.operator))


def _taken_out_once(db, user_id: str) -> None:
    records = rows(db, "SELECT trigger, state_before FROM deprovision_records "
                       "WHERE user_id = :u", u=user_id)
    assert [r.trigger for r in records] == ["operator"], records
    before = records[0].state_before
    before = before if isinstance(before, dict) else json.loads(before)
    assert before["status"] == "active"
    assert len(before["grants"]) == 2
    types = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u "
                                      "ORDER BY id", u=user_id)]
    assert types.count("user.deprovisioned") == 1, types
    assert types.count("grant.removed") == 2, types
    actions = [r.action for r in rows(db, "SELECT action FROM audit_events WHERE "
                                          "subject_id = :u ORDER BY id", u=user_id)]
    assert actions.count("user:deprovision") == 1, actions


def test_the_cli_waiting_for_a_deprovisioning_in_flight_does_not_repeat_it(
        db, tenant, database_url, dialect):
    """`roster lifecycle deprovision` of a user another deprovisioning holds: it waits, then
    says the user is already deprovisioned."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: two deprovisionings never overlap")
    leaver = make_leaver(db, tenant)
    with _deprovision_in_flight(db, leaver.user_id):
        cli, ran = started(db, lambda: roster(database_url, "lifecycle", "deprovision",
                                              "--org", "acme", leaver.user_id))
        waited = cli.is_alive()
    cli.join(30)
    assert not isinstance(ran.get("result"), BaseException), ran
    assert waited, "the CLI did not wait for the user's row"
    assert "already deprovisioned" in ran["result"].output
    _taken_out_once(db, leaver.user_id)


def test_a_disable_waiting_for_a_deprovisioning_in_flight_does_not_repeat_it(
        client, db, tenant, dialect):
    """Disabling the directory (API) while another deprovisioning of one of its users is
    in flight: the disable takes out the others and leaves that one to it."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: two deprovisionings never overlap")
    leaver = make_leaver(db, tenant)
    admin = make_key(db, "admin", tenant.org)
    url = f"/api/v1/orgs/{tenant.org.id}/directories/{tenant.directory.id}/disable"
    with _deprovision_in_flight(db, leaver.user_id):
        disabling, disabled = started(db, lambda: client.post(url, headers=admin.headers))
        waited = disabling.is_alive()
    disabling.join(30)
    assert not isinstance(disabled.get("result"), BaseException), disabled
    assert waited, "the disable did not wait for the user's row"
    assert disabled["result"].status_code == 200, disabled["result"].get_data(as_text=True)
    _taken_out_once(db, leaver.user_id)
    # The manager, active, was taken out by the disable.
    assert rows(db, "SELECT trigger FROM deprovision_records WHERE user_id = :u",
                u=leaver.manager_id) == [("directory_disabled",)]


def test_the_cli_waiting_for_a_reactivation_in_flight_does_not_repeat_it(
        db, tenant, database_url, dialect):
    """`roster lifecycle reactivate` of a user another reactivation holds: it waits, then
    says the user is already active; one ``user.reactivated``, one ``user:reactivate``."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: two reactivations never overlap")
    leaver = make_leaver(db, tenant)
    roster(database_url, "lifecycle", "deprovision", "--org", "acme", leaver.user_id)
    with in_flight(db, lambda s: reactivate_user(s, s.get(User, leaver.user_id), OPERATOR)):
        cli, ran = started(db, lambda: roster(database_url, "lifecycle", "reactivate",
                                              "--org", "acme", leaver.user_id))
        waited = cli.is_alive()
    cli.join(30)
    assert not isinstance(ran.get("result"), BaseException), ran
    assert waited, "the CLI did not wait for the user's row"
    assert "already active" in ran["result"].output
    types = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u "
                                      "ORDER BY id", u=leaver.user_id)]
    assert types.count("user.reactivated") == 1, types
    actions = [r.action for r in rows(db, "SELECT action FROM audit_events WHERE "
                                          "subject_id = :u ORDER BY id", u=leaver.user_id)]
    assert actions.count("user:reactivate") == 1, actions
