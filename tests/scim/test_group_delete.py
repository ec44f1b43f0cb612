"""DELETE /Groups/{id} (RFC 7644 §3.6) as its members see it: their memberships end in the
same transaction, and a member's own history (audit by subject, the outbox) says so, as a
PATCH emptying the group would."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import make_key
from tests.conftest import rows
from tests.scim.support import Scim


@pytest.fixture
def scim(client, tenant):
    """A SCIM client for the acme tenant."""
    return Scim(client, tenant)


def _json(value):
    return value if isinstance(value, dict) else json.loads(value)


def test_a_group_delete_is_in_each_members_audit_history(scim, client, db, tenant):
    """A member's audit export (by subject) holds the membership:remove of the group's
    DELETE naming it, before the group:delete: it held the join and no end of it, so a
    reviewer reading one user's history saw it in the group for ever."""
    ada = scim.create_user("ada@acme.example")["id"]
    bob = scim.create_user("bob@acme.example", externalId="00u2")["id"]
    admins = scim.create_group("Admins", [ada, bob])["id"]
    assert scim.delete(f"/Groups/{admins}").status_code == 204
    auditor = make_key(db, "auditor", tenant.org).headers
    response = client.get(f"/api/v1/audit/export?format=jsonl&subject_id={ada}",
                          headers=auditor)
    assert response.status_code == 200
    events = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    membership = [(e["action"], e["subject_id"], sorted(e["data"]["user_ids"]))
                  for e in events if e["action"].startswith("membership:")]
    assert membership == [("membership:add", admins, sorted([ada, bob])),
                          ("membership:remove", admins, sorted([ada, bob]))]
    actions = [r.action for r in rows(db, "SELECT action FROM audit_events WHERE "
                                      "subject_id = :g ORDER BY seq", g=admins)]
    assert actions[-2:] == ["membership:remove", "group:delete"]


def test_a_group_delete_tells_the_portal_its_members_left(scim, db):
    """The outbox: membership.removed (the members) then group.deleted, as a PATCH emptying
    the group then a DELETE would write; an empty group's DELETE writes group.deleted only."""
    ada = scim.create_user("ada@acme.example")["id"]
    admins = scim.create_group("Admins", [ada])["id"]
    empty = scim.create_group("Empty")["id"]
    assert scim.delete(f"/Groups/{admins}").status_code == 204
    assert scim.delete(f"/Groups/{empty}").status_code == 204
    events = [(r.type, _json(r.payload)) for r in rows(
        db, "SELECT type, payload FROM outbox_events WHERE aggregate_id IN (:a, :e) "
        "ORDER BY id", a=admins, e=empty)]
    assert [(t, p.get("user_ids")) for t, p in events] == [
        ("group.created", None), ("membership.added", [ada]), ("group.created", None),
        ("membership.removed", [ada]), ("group.deleted", None), ("group.deleted", None)]


def _removals(db, group_id):
    return [_json(r.payload)["user_ids"] for r in rows(
        db, "SELECT payload FROM outbox_events WHERE aggregate_id = :g AND "
        "type = 'membership.removed' ORDER BY id", g=group_id)]


def test_a_deleted_members_hidden_membership_is_announced_gone_once(scim, db):
    """A SCIM-deleted user leaves its groups' members at once, and its DELETE announces
    membership.removed. The group write that later drops its hidden row (Okta's next PUT
    of the list, a PATCH remove, the group's DELETE) audits that, but tells the portal
    nothing more: it announced the same removal a second time, naming a user already gone."""
    ada = scim.create_user("ada@acme.example")["id"]
    bob = scim.create_user("bob@acme.example", externalId="00u2")["id"]
    cyd = scim.create_user("cyd@acme.example", externalId="00u3")["id"]
    eng = scim.create_group("Eng", [ada, bob])["id"]
    ops = scim.create_group("Ops", [ada, cyd])["id"]
    for user in (ada,):
        assert scim.delete(f"/Users/{user}").status_code == 204
    assert _removals(db, eng) == _removals(db, ops) == [[ada]]
    put = scim.put(f"/Groups/{eng}", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:"
                                                  "Group"], "displayName": "Eng",
                                      "members": [{"value": bob}]})
    assert put.status_code == 200
    assert scim.delete(f"/Groups/{ops}").status_code == 204
    assert _removals(db, eng) == [[ada]]
    assert _removals(db, ops) == [[ada], [cyd]]
    audited = [(r.subject_id, sorted(_json(r.data)["user_ids"])) for r in rows(
        db, "SELECT subject_id, data FROM audit_events WHERE action = 'membership:remove' "
        "ORDER BY seq")]
    assert audited == [(eng, [ada]), (ops, sorted([ada, cyd]))]
