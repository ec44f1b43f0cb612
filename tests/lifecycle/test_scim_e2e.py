"""End to end through SCIM: each deprovisioning request of each dialect, then the status,
the revoked rows, the audit records, the outbox events and the signed receipt."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.audit.receipts import verify_receipt
from app.models import AuditEvent, OutboxEvent
from tests.api.conftest import make_key
from tests.conftest import make_tenant, rows
from tests.lifecycle.support import equip, mapped_tenant
from tests.scim.support import PATCH_OP, Scim

OFF = {
    "okta_pathless_patch": ("okta", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]}),
    "entra_replace_string_false": ("entra", {"schemas": [PATCH_OP], "Operations": [
        {"op": "Replace", "path": "active", "value": "False"}]}),
    "entra_compliant_replace": ("entra", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "active", "value": False}]}),
    "delete": ("entra", None),
}


def _take_out(scim: Scim, user_id: str, body: dict | None, request_id: str):
    headers = {"X-Request-ID": request_id, "User-Agent": "IdP-Provisioning/1.0"}
    if body is None:
        return scim.delete(f"/Users/{user_id}", headers=headers)
    return scim.patch(f"/Users/{user_id}", body, headers=headers)


@pytest.mark.parametrize("case", sorted(OFF))
def test_scim_deprovisioning_end_to_end(client, db, case):
    """Every dialect's 'user left' revokes all, records it, tells the portal, signs it."""
    vendor, body = OFF[case]
    tenant = make_tenant(db, "acme", vendor)
    scim = Scim(client, tenant)
    user_id = scim.create_user("leaver@acme.example")["id"]
    equip(db, tenant, user_id)
    response = _take_out(scim, user_id, body, "req-e2e-1")
    assert response.status_code == (204 if body is None else 200), response.get_json()
    user = rows(db, "SELECT status, active FROM users WHERE id = :i", i=user_id)[0]
    assert user.status == ("deleted" if body is None else "deprovisioned")
    assert not user.active
    assert scim.get(f"/Users/{user_id}").status_code == (404 if body is None else 200)
    assert rows(db, "SELECT count(*) FROM login_sessions WHERE user_id = :i AND "
                    "revoked_at IS NULL", i=user_id)[0][0] == 0
    assert rows(db, "SELECT count(*) FROM issued_tokens WHERE user_id = :i AND "
                    "revoked_at IS NULL", i=user_id)[0][0] == 0
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :i", i=user_id)[0][0] == 0
    audit = rows(db, "SELECT actor_type, request_id FROM audit_events WHERE action = "
                     "'user:deprovision' AND subject_id = :i", i=user_id)
    assert [(a.actor_type, a.request_id) for a in audit] == [("scim_token", "req-e2e-1")]
    types = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :i",
                                  i=user_id)]
    assert {"user.deprovisioned", "grant.removed", "session.revoked"} <= set(types)
    record = rows(db, "SELECT * FROM deprovision_records WHERE user_id = :i", i=user_id)[0]
    expected_trigger = "scim_delete" if body is None else "scim_active_false"
    assert (record.trigger, record.vendor, record.request_id, record.user_agent) == (
        expected_trigger, vendor, "req-e2e-1", "IdP-Provisioning/1.0")
    assert (record.sessions_revoked, record.tokens_revoked, record.grants_removed) == (2, 3, 2)
    auditor = make_key(db, "auditor", tenant.org)
    receipt = client.get(f"/api/v1/deprovisions/{record.id}/receipt", headers=auditor.headers)
    assert receipt.status_code == 200
    document = receipt.get_json()
    assert verify_receipt(document, document["public_key"].encode())["user_id"] == user_id


def test_scim_active_true_reactivates_with_the_same_id(client, db):
    """Entra's re-enable (Replace active "True") restores the user and its manual grant."""
    tenant = make_tenant(db, "acme", "entra")
    scim = Scim(client, tenant)
    user_id = scim.create_user("back@acme.example")["id"]
    equip(db, tenant, user_id)
    _take_out(scim, user_id, OFF["entra_replace_string_false"][1], "req-off")
    on = {"schemas": [PATCH_OP], "Operations": [
        {"op": "Replace", "path": "active", "value": "True"}]}
    response = scim.patch(f"/Users/{user_id}", on)
    assert response.status_code == 200
    assert response.get_json()["id"] == user_id
    assert response.get_json()["active"] is True
    assert [g.source for g in rows(db, "SELECT source FROM grants WHERE user_id = :i",
                                   i=user_id)] == ["manual"]
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.reactivated'"
                )[0][0] == 1


def test_repeated_active_false_keeps_one_record(client, db):
    """An IdP retrying the same PATCH does not deprovision twice."""
    tenant = make_tenant(db, "acme", "okta")
    scim = Scim(client, tenant)
    user_id = scim.create_user("twice@acme.example")["id"]
    for attempt in range(2):
        response = _take_out(scim, user_id, OFF["okta_pathless_patch"][1], f"req-{attempt}")
        assert response.status_code == 200
    assert rows(db, "SELECT count(*) FROM deprovision_records")[0][0] == 1


def test_losing_every_grant_over_scim_deprovisions_when_policy_says_so(client, db):
    """Removing the last mapped group (SCIM PATCH on the group) triggers lost_all_grants."""
    tenant = mapped_tenant(db, "okta")
    scim = Scim(client, tenant)
    user_id = scim.create_user("member@acme.example")["id"]
    group = scim.post("/Groups", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                                  "displayName": "Buyers", "members": [{"value": user_id}]})
    assert group.status_code == 201
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :i", i=user_id)[0][0] == 1
    response = scim.patch(f"/Groups/{group.get_json()['id']}", {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "remove", "path": f'members[value eq "{user_id}"]'}]},
        headers={"X-Request-ID": "req-loss"})
    assert response.status_code in (200, 204)
    user = rows(db, "SELECT status, active FROM users WHERE id = :i", i=user_id)[0]
    assert (user.status, bool(user.active)) == ("deprovisioned", False)
    record = rows(db, "SELECT trigger, request_id FROM deprovision_records WHERE user_id = :i",
                  i=user_id)[0]
    assert (record.trigger, record.request_id) == ("lost_all_grants", "req-loss")
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.deprovisioned' "
                    "AND aggregate_id = :i", i=user_id)[0][0] == 1


def test_a_long_user_agent_does_not_stop_a_deprovisioning(client, db):
    """The record keeps the client's User-Agent cut to its column: on PostgreSQL a longer
    one made the whole deprovisioning fail (500) instead of taking the user out."""
    tenant = make_tenant(db, "acme", "okta")
    scim = Scim(client, tenant)
    user_id = scim.create_user("agent@acme.example")["id"]
    agent = "Okta SCIM Client " + "x" * 700
    response = scim.patch(f"/Users/{user_id}", OFF["okta_pathless_patch"][1],
                          headers={"User-Agent": agent})
    assert response.status_code == 200
    [record] = rows(db, "SELECT user_agent FROM deprovision_records WHERE user_id = :i",
                    i=user_id)
    assert record.user_agent == agent[:500]


def _deprovisioned_events(db, user_id: str) -> list[OutboxEvent]:
    """The ``user.deprovisioned`` events of one user, oldest first."""
    with db.transaction() as session:
        return list(session.scalars(select(OutboxEvent).where(
            OutboxEvent.type == "user.deprovisioned", OutboxEvent.aggregate_id == user_id)
            .order_by(OutboxEvent.id)))


def test_delete_of_a_deactivated_user_tells_the_portal_it_was_deleted(client, db):
    """Entra's soft delete (active false) and, later, its hard DELETE (RFC 7644 §3.6): the
    DELETE is told as an active user's is, ``user.deprovisioned`` with trigger
    ``scim_delete``, in the transaction that writes ``user:delete``; nothing is revoked or
    recorded twice."""
    tenant = make_tenant(db, "acme", "entra")
    scim = Scim(client, tenant)
    user_id = scim.create_user("gone@acme.example")["id"]
    equip(db, tenant, user_id)
    assert _take_out(scim, user_id, OFF["entra_replace_string_false"][1],
                     "req-off").status_code == 200
    assert _take_out(scim, user_id, None, "req-delete").status_code == 204
    assert rows(db, "SELECT status FROM users WHERE id = :i", i=user_id)[0].status == "deleted"
    first, deleted = _deprovisioned_events(db, user_id)
    assert first.payload["trigger"] == "scim_active_false"
    data = deleted.payload
    assert (data["trigger"], data["user_id"], data["user_name"], data["email"],
            data["directory_id"], data["record_id"], data["units"], data["roles"]) == (
        "scim_delete", user_id, "gone@acme.example", "gone@acme.example",
        tenant.directory.id, None, [], [])
    assert data["manager"] == first.payload["manager"]
    assert rows(db, "SELECT count(*) FROM deprovision_records WHERE user_id = :i",
                i=user_id)[0][0] == 1
    with db.transaction() as session:
        [audit] = session.scalars(select(AuditEvent).where(
            AuditEvent.action == "user:delete", AuditEvent.subject_id == user_id))
        assert (audit.request_id, audit.data) == (
            "req-delete", {"record_id": None, "event_id": deleted.event_id})


def test_losing_the_last_group_names_the_grants_held_in_the_event_and_the_record(client, db):
    """The mapping removes the grants of a user who left its last mapped group, then the
    policy deprovisions it in the same request: `user.deprovisioned` and the record (and
    its signed receipt) still name the roles and units held until then, as for every
    other trigger (they said `roles: []`, `state_before.grants: []`, `grants_removed: 0`)."""
    tenant = mapped_tenant(db, "okta")
    scim = Scim(client, tenant)
    user_id = scim.create_user("member@acme.example")["id"]
    group_id = scim.create_group("Buyers", [user_id])["id"]
    response = scim.patch(f"/Groups/{group_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "remove", "path": f'members[value eq "{user_id}"]'}]})
    assert response.status_code in (200, 204)
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :i", i=user_id)[0][0] == 0
    portal = make_key(db, "portal", tenant.org)
    events = client.get("/api/v1/events?type=user.deprovisioned&limit=200",
                        headers=portal.headers).get_json()["items"]
    [data] = [e["data"] for e in events if e["aggregate_id"] == user_id]
    assert data["trigger"] == "lost_all_grants"
    assert [r["role_key"] for r in data["roles"]] == ["buyer"]
    assert [u["path"] for u in data["units"]] == ["Purchasing"]
    assert data["roles"][0]["unit_id"] == data["units"][0]["id"]
    auditor = make_key(db, "auditor", tenant.org)
    record = client.get(f"/api/v1/deprovisions/{data['record_id']}",
                        headers=auditor.headers).get_json()
    assert [g["role_key"] for g in record["state_before"]["grants"]] == ["buyer"]
    assert record["grants_removed"] == 1
    receipt = client.get(f"/api/v1/deprovisions/{data['record_id']}/receipt",
                         headers=auditor.headers).get_json()
    signed = verify_receipt(receipt, receipt["public_key"].encode())
    assert (signed["grants_removed"], len(signed["state_before"]["grants"])) == (1, 1)
    removed = rows(db, "SELECT count(*) FROM outbox_events WHERE type = 'grant.removed' "
                       "AND aggregate_id = :i", i=user_id)[0][0]
    assert removed == 1  # the mapping's, not a second one by the deprovisioning
