"""Entra's "restore": re-creating a SCIM-deleted user's externalId within retention brings
the same user back (same id, posted attributes, access under the current mapping)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import select

from app.db import utcnow
from app.directory.organizations import add_unit
from app.lifecycle.batches import purge_deleted
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Grant, Organization, Role, Unit
from tests.conftest import OPERATOR, make_tenant, rows
from tests.scim.support import CORE_GROUP, CORE_USER, ENTERPRISE, Scim

# The legacy dialect, and the compliant one (the flag on the tenant URL).
DIALECTS = {"entra_legacy": "", "entra_compliant": "?aadOptscim062020"}


def entra_user(user_name: str, external_id: str, **extra: object) -> dict:
    """Entra's create body (the provisioning tutorial's shape)."""
    return {"schemas": [CORE_USER, ENTERPRISE], "externalId": external_id,
            "userName": user_name, "active": True,
            "emails": [{"primary": True, "type": "work", "value": user_name}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Ann Leaver", "familyName": "Leaver", "givenName": "Ann"},
            "roles": [], **extra}


def _tenant_with_mapping(db):
    """An Entra tenant whose mapping makes members of "Buyers" buyers in Purchasing."""
    tenant = make_tenant(db, "acme", "entra")
    with db.transaction() as session:
        org = session.get(Organization, tenant.org.id)
        add_unit(session, org, "Purchasing", "department", None, OPERATOR)
        apply_ruleset(session, org, parse_document({"rules": [
            {"id": "buyers", "role": "buyer", "unit": "Purchasing",
             "match": {"group": "Buyers"}}]}), OPERATOR, max_loss_share=1.0, force=True)
    return tenant


def _give_manual_grant(db, tenant, user_id: str) -> None:
    with db.transaction() as session:
        unit = session.scalars(select(Unit).where(Unit.organization_id == tenant.org.id,
                                                  Unit.name == "Purchasing")).one()
        role = session.scalars(select(Role).where(Role.organization_id == tenant.org.id,
                                                  Role.key == "approver")).one()
        session.add(Grant(organization_id=tenant.org.id, user_id=user_id, unit_id=unit.id,
                          role_id=role.id, source="manual", parameters={}))


def _grants(db, user_id: str) -> list[tuple[str, str]]:
    return sorted((r.key, r.source) for r in rows(
        db, "SELECT roles.key, grants.source FROM grants JOIN roles ON roles.id = "
            "grants.role_id WHERE grants.user_id = :u", u=user_id))


def _events(db, user_id: str) -> list[str]:
    return [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u "
                                     "ORDER BY id", u=user_id)]


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
def test_recreating_the_external_id_restores_the_same_user_with_its_access(client, db,
                                                                            dialect):
    """create -> DELETE -> POST the same externalId: 201, same id, grants and groups back."""
    tenant = _tenant_with_mapping(db)
    scim = Scim(client, tenant)
    flag = DIALECTS[dialect]
    created = scim.post(f"/Users{flag}", entra_user("ann@acme.example", "ext-ann"))
    assert created.status_code == 201, created.get_json()
    user_id = created.get_json()["id"]
    group = scim.post(f"/Groups{flag}", {"schemas": [CORE_GROUP], "displayName": "Buyers",
                                         "members": [{"value": user_id}]})
    assert group.status_code == 201, group.get_json()
    _give_manual_grant(db, tenant, user_id)
    assert _grants(db, user_id) == [("approver", "manual"), ("buyer", "rule:buyers")]

    assert scim.delete(f"/Users/{user_id}{flag}").status_code == 204
    assert scim.get(f"/Users/{user_id}").status_code == 404
    assert _grants(db, user_id) == []

    again = scim.post(f"/Users{flag}", entra_user("ann@acme.example", "ext-ann",
                                                   displayName="Ann (back)"))
    assert again.status_code == 201, again.get_json()
    body = again.get_json()
    assert body["id"] == user_id
    assert again.headers["Location"] == f"http://roster.test/scim/v2/Users/{user_id}"
    assert (body["active"], body["displayName"]) == (True, "Ann (back)")
    assert again.headers["ETag"] == body["meta"]["version"] != created.headers["ETag"]
    fetched = scim.get(f"/Users/{user_id}").get_json()
    assert [g["value"] for g in fetched["groups"]] == [group.get_json()["id"]]
    assert body["groups"] == fetched["groups"], "the 201 body shows the restored memberships"
    assert _grants(db, user_id) == [("approver", "manual"), ("buyer", "rule:buyers")]
    [user] = rows(db, "SELECT status, active, deleted_at FROM users WHERE id = :u", u=user_id)
    assert (user.status, bool(user.active), user.deleted_at) == ("active", True, None)
    assert rows(db, "SELECT count(*) FROM users")[0][0] == 1
    # Events after the deletion: attributes updated, reactivated, grants added back.
    tail = _events(db, user_id)[_events(db, user_id).index("user.deprovisioned") + 1:]
    assert tail.count("user.reactivated") == 1
    assert {"user.updated", "grant.added"} <= set(tail)
    assert "user.created" not in tail
    [audit] = rows(db, "SELECT data FROM audit_events WHERE action = 'user:reactivate' "
                       "AND subject_id = :u", u=user_id)
    data = audit.data if isinstance(audit.data, dict) else json.loads(audit.data)
    assert data["status_before"] == "deleted"
    assert data["manual_grants_restored"] == ["approver"]
    [record] = rows(db, "SELECT restored_at FROM deprovision_records WHERE user_id = :u",
                    u=user_id)
    assert record.restored_at is not None


def test_a_new_person_given_a_leavers_external_id_gets_a_user_of_their_own(client, db):
    """Entra maps externalId from mailNickname, which is reused: a new hire posted with a
    deleted leaver's externalId but another userName is a new user (new id), with no
    groups and no grants of the leaver's, who stays deleted. The same userName in another
    case still restores (a UPN's case is not the person)."""
    tenant = _tenant_with_mapping(db)
    scim = Scim(client, tenant)
    leaver = scim.post("/Users", entra_user("john.smith@acme.example", "jsmith")).get_json()
    assert scim.post("/Groups", {"schemas": [CORE_GROUP], "displayName": "Buyers",
                                 "members": [{"value": leaver["id"]}]}).status_code == 201
    _give_manual_grant(db, tenant, leaver["id"])
    assert scim.delete(f"/Users/{leaver['id']}").status_code == 204

    hire = scim.post("/Users", entra_user("jsmith@acme.example", "jsmith"))
    assert hire.status_code == 201, hire.get_json()
    body = hire.get_json()
    assert body["id"] != leaver["id"]
    assert body.get("groups", []) == []
    assert _grants(db, body["id"]) == []
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=leaver["id"])[0][0] == "deleted"
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'user:reactivate'"
                )[0][0] == 0

    assert scim.delete(f"/Users/{body['id']}").status_code == 204
    back = scim.post("/Users", entra_user("John.Smith@ACME.example", "jsmith"))
    assert back.status_code == 201, back.get_json()
    assert back.get_json()["id"] == leaver["id"]
    assert _grants(db, leaver["id"]) == [("approver", "manual"), ("buyer", "rule:buyers")]


def _deleted_user(client, db, name: str = "old@acme.example", external_id: str = "ext-old"):
    tenant = make_tenant(db, "acme", "entra")
    scim = Scim(client, tenant)
    user_id = scim.post("/Users", entra_user(name, external_id)).get_json()["id"]
    assert scim.delete(f"/Users/{user_id}").status_code == 204
    return tenant, scim, user_id


def test_past_retention_the_same_external_id_creates_a_new_user(client, db):
    """Deleted 31 days ago (retention 30, not purged yet): a normal create, a new id; the
    old row keeps its trail and gives up its userName (tombstone)."""
    _, scim, old_id = _deleted_user(client, db)
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET deleted_at = :t WHERE id = :u"),
                     {"t": utcnow() - timedelta(days=31), "u": old_id})
    response = scim.post("/Users", entra_user("old@acme.example", "ext-old"))
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["id"] != old_id
    [old] = rows(db, "SELECT status, user_name FROM users WHERE id = :u", u=old_id)
    assert (old.status, old.user_name) == ("deleted", f"{old_id}.deleted")
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.reactivated'"
                )[0][0] == 0


def test_after_purge_the_same_external_id_creates_a_new_user(client, db):
    """A purged identity is gone: re-creating it is an ordinary create."""
    _, scim, old_id = _deleted_user(client, db)
    with db.transaction() as session:
        assert purge_deleted(session, OPERATOR, retention_days=0,
                             now=utcnow() + timedelta(seconds=1)) == 1
    response = scim.post("/Users", entra_user("old@acme.example", "ext-old"))
    assert response.status_code == 201
    assert response.get_json()["id"] != old_id


def test_restore_takes_back_a_user_name_given_up_to_a_later_user(client, db):
    """A deleted user's name went to a newer user (tombstone), who was deleted in turn:
    re-creating the first externalId restores it under the posted name."""
    _, scim, first = _deleted_user(client, db, "pat@acme.example", "ext-first")
    second = scim.post("/Users", entra_user("pat@acme.example", "ext-second")).get_json()["id"]
    assert rows(db, "SELECT user_name FROM users WHERE id = :u", u=first)[0][0] == \
        f"{first}.deleted"
    assert scim.delete(f"/Users/{second}").status_code == 204
    response = scim.post("/Users", entra_user("pat@acme.example", "ext-first"))
    assert response.status_code == 201, response.get_json()
    assert (response.get_json()["id"], response.get_json()["userName"]) == (
        first, "pat@acme.example")
    assert rows(db, "SELECT user_name FROM users WHERE id = :u", u=second)[0][0] == \
        f"{second}.deleted"


def test_restore_refused_when_a_live_user_holds_the_name_changes_nothing(client, db):
    """The deleted user's userName went to a live user meanwhile: re-creating the deleted
    one is 409 uniqueness, it stays deleted, no reactivation was written."""
    _, scim, old_id = _deleted_user(client, db)
    assert scim.post("/Users", entra_user("old@acme.example", "ext-new")).status_code == 201
    response = scim.post("/Users", entra_user("old@acme.example", "ext-old"))
    assert response.status_code == 409
    assert response.get_json()["scimType"] == "uniqueness"
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=old_id)[0][0] == "deleted"
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'user:reactivate'"
                )[0][0] == 0


def test_recreating_with_active_false_is_an_ordinary_create(client, db):
    """Only a POST asking for an active user restores; active=false creates a new one."""
    _, scim, old_id = _deleted_user(client, db)
    body = entra_user("old@acme.example", "ext-old", active=False)
    response = scim.post("/Users", body)
    assert response.status_code == 201
    assert response.get_json()["id"] != old_id
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=old_id)[0][0] == "deleted"


def test_another_directory_cannot_restore_the_user(client, db):
    """The externalId is looked up in the caller's directory only."""
    _, _, old_id = _deleted_user(client, db)
    other = Scim(client, make_tenant(db, "globex", "entra"))
    response = other.post("/Users", entra_user("old@globex.example", "ext-old"))
    assert response.status_code == 201
    assert response.get_json()["id"] != old_id
    assert rows(db, "SELECT status FROM users WHERE id = :u", u=old_id)[0][0] == "deleted"


def test_an_okta_create_without_external_id_never_looks_for_a_deleted_user(client, db):
    """No externalId, no lookup: a deleted user with the same userName is a tombstone."""
    tenant = make_tenant(db, "acme", "okta")
    scim = Scim(client, tenant)
    body = {"schemas": [CORE_USER], "userName": f"{uuid.uuid4().hex}@acme.example"}
    first = scim.post("/Users", body).get_json()["id"]
    assert scim.delete(f"/Users/{first}").status_code == 204
    second = scim.post("/Users", body)
    assert second.status_code == 201
    assert second.get_json()["id"] != first
