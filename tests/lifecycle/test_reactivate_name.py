"""A deleted user's userName on reactivation: it comes back, or the reactivation is refused.

A new user may take the userName of a SCIM-deleted user, which then becomes "<id>.deleted"
(app/directory/user_names.py). Reactivating the deleted user (operator API, CLI, batch
restore) must bring its own name back, not the placeholder, and must not give two live
users one name.
"""

from __future__ import annotations

import json

from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import make_tenant, rows
from tests.lifecycle.support import roster
from tests.lifecycle.test_restore_on_create import entra_user
from tests.scim.support import Scim

REACTIVATE = "/api/v1/users/{}/reactivate"


def _create(scim: Scim, name: str, external_id: str) -> str:
    response = scim.post("/Users", entra_user(name, external_id))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def _delete(scim: Scim, user_id: str) -> None:
    assert scim.delete(f"/Users/{user_id}").status_code == 204


def _user(db, user_id: str):
    [row] = rows(db, "SELECT user_name, released_user_name, status FROM users WHERE id = :u",
                 u=user_id)
    return row


def _name_given_up(client, db, name: str = "pat@acme.example"):
    """A deleted user whose userName a newer user took: (tenant, scim, deleted, newer)."""
    tenant = make_tenant(db, "acme", "entra")
    scim = Scim(client, tenant)
    first = _create(scim, name, "ext-first")
    _delete(scim, first)
    second = _create(scim, name, "ext-second")
    assert tuple(_user(db, first)) == (f"{first}.deleted", name, "deleted")
    return tenant, scim, first, second


def test_reactivation_takes_back_the_name_given_up(client, db):
    """The newer holder was deleted in turn: the operator's reactivation brings the first
    user back under its own name (not "<id>.deleted"), in SCIM, the answer and the event,
    and the newer user gives the name up in its turn."""
    _, scim, first, second = _name_given_up(client, db)
    _delete(scim, second)
    key = make_key(db, "operator")
    response = client.post(REACTIVATE.format(first), headers=key.headers)
    assert response.status_code == 200, response.get_json()
    assert tuple(_user(db, first)) == ("pat@acme.example", None, "active")
    assert tuple(_user(db, second)) == (f"{second}.deleted", "pat@acme.example", "deleted")
    assert scim.get(f"/Users/{first}").get_json()["userName"] == "pat@acme.example"
    [event] = rows(db, "SELECT payload FROM outbox_events WHERE type = 'user.reactivated' "
                       "AND aggregate_id = :u", u=first)
    payload = event.payload if isinstance(event.payload, dict) else json.loads(event.payload)
    assert payload["user_name"] == "pat@acme.example"


def test_reactivation_refused_while_a_live_user_holds_the_name(client, db):
    """409 problem naming the clash; the user stays deleted under its placeholder, and no
    reactivation was audited or announced."""
    _, _, first, second = _name_given_up(client, db)
    key = make_key(db, "operator")
    response = client.post(REACTIVATE.format(first), headers=key.headers)
    body = assert_problem(response, 409, "conflict")
    assert "'pat@acme.example' belongs to another user" in body["detail"]
    assert tuple(_user(db, first)) == (f"{first}.deleted", "pat@acme.example", "deleted")
    assert tuple(_user(db, second)) == ("pat@acme.example", None, "active")
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'user:reactivate'"
                )[0][0] == 0
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.reactivated'"
                )[0][0] == 0


def test_cli_reactivation_refused_in_one_line(client, db, database_url):
    """`roster lifecycle reactivate` exits 1 with the same reason."""
    _, _, first, _ = _name_given_up(client, db)
    result = roster(database_url, "lifecycle", "reactivate", "--org", "acme", first, ok=False)
    assert result.exit_code == 1
    assert "belongs to another user of the directory now" in result.output
    assert _user(db, first).status == "deleted"


def test_restore_by_recreation_takes_the_kept_name_and_forgets_it(client, db):
    """Entra's restore matches the kept name (the live holder was deleted in turn), applies
    the posted userName as sent (its case) and clears the kept name, so a later
    reactivation has nothing to take back. Another userName is not a restore."""
    _, scim, first, second = _name_given_up(client, db)
    other = scim.post("/Users", entra_user("pat.new@acme.example", "ext-first"))
    assert other.status_code == 201, other.get_json()
    assert other.get_json()["id"] != first
    _delete(scim, other.get_json()["id"])
    _delete(scim, second)
    response = scim.post("/Users", entra_user("Pat@acme.example", "ext-first"))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["id"] == first
    assert tuple(_user(db, first)) == ("Pat@acme.example", None, "active")


def test_batch_restore_skips_a_user_whose_name_is_taken(client, db, database_url):
    """A mass deletion (6 of 12) opens a batch; one name is taken by a new user before the
    restore: the other five come back, the sixth is listed as skipped, stays deleted, and
    the audit event says why."""
    tenant = make_tenant(db, "acme", "entra")
    scim = Scim(client, tenant)
    ids = [_create(scim, f"u{i}@acme.example", f"ext-{i}") for i in range(12)]
    for user_id in ids[:6]:
        _delete(scim, user_id)
    [batch_id] = [r.id for r in rows(db, "SELECT id FROM deprovision_batches")]
    taker = _create(scim, "u0@acme.example", "ext-taker")
    result = roster(database_url, "lifecycle", "restore", "--batch", batch_id)
    assert "5 user(s) reactivated" in result.output
    assert f"skipped {ids[0]}: user {ids[0]} cannot be reactivated" in result.output
    assert _user(db, ids[0]).status == "deleted"
    assert [tuple(_user(db, i)) for i in ids[1:6]] == [
        (f"u{i}@acme.example", None, "active") for i in range(1, 6)]
    assert _user(db, taker).user_name == "u0@acme.example"
    [audit] = rows(db, "SELECT data FROM audit_events WHERE action = "
                       "'directory:batch_restore'")
    data = audit.data if isinstance(audit.data, dict) else json.loads(audit.data)
    assert data["restored"] == 5
    assert list(data["skipped"]) == [ids[0]]
