"""An operator's deprovisioning holds: the IdP's routine ``active: true`` (Okta sends it with
every profile push) does not bring the account back; only an operator's reactivation does."""

from __future__ import annotations

import json

from tests.api.conftest import make_key
from tests.conftest import rows

DEPROVISION = "/api/v1/users/{}/deprovision"
REACTIVATE = "/api/v1/users/{}/reactivate"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def _okta_put(client, tenant, user_id: str, title: str):
    """Okta's profile push: a full PUT that always says active: true."""
    return client.put(f"/scim/v2/Users/{user_id}", headers=tenant.headers, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "leaver", "externalId": "ext-leaver", "active": True, "title": title,
        "emails": [{"value": "leaver@acme.test", "type": "work", "primary": True}]})


def _entra_enable(client, tenant, user_id: str):
    return client.patch(f"/scim/v2/Users/{user_id}", headers=tenant.headers, json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "Replace", "path": "active", "value": "True"}]})


def _state(db, user_id: str) -> tuple[str, bool]:
    [row] = rows(db, "SELECT status, active FROM users WHERE id = :u", u=user_id)
    return row.status, bool(row.active)


def _count(db, sql: str, **params) -> int:
    return rows(db, sql, **params)[0][0]


def test_the_idps_active_true_does_not_undo_an_operators_deprovisioning(client, db, tenant,
                                                                         leaver):
    """PUT (Okta) and PATCH (Entra) with active true: 200, the user stays out (active false
    in the answer), the other attributes are applied, the refusal is audited with the
    operator's record, and the portal hears of no reactivation."""
    key = make_key(db, "operator")
    deprovisioned = client.post(DEPROVISION.format(leaver.user_id), headers=key.headers,
                                json={"reason": "incident IR-7"})
    assert deprovisioned.status_code == 201
    record_id = deprovisioned.get_json()["id"]

    put = _okta_put(client, tenant, leaver.user_id, "Buyer II")
    assert put.status_code == 200, put.get_json(force=True)
    body = put.get_json(force=True)
    assert (body["active"], body["title"]) == (False, "Buyer II")
    patch = _entra_enable(client, tenant, leaver.user_id)
    assert patch.status_code == 200, patch.get_json(force=True)
    assert patch.get_json(force=True)["active"] is False

    assert _state(db, leaver.user_id) == ("deprovisioned", False)
    held = rows(db, "SELECT data FROM audit_events WHERE action = 'user:reactivate_held' "
                    "AND subject_id = :u ORDER BY id", u=leaver.user_id)
    assert len(held) == 2
    data = held[0].data if isinstance(held[0].data, dict) else json.loads(held[0].data)
    assert data == {"record_id": record_id, "reason": "incident IR-7"}
    assert _count(db, "SELECT count(*) FROM outbox_events WHERE type = 'user.reactivated'") == 0
    assert _count(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=leaver.user_id) == 0


def test_an_operators_reactivation_lifts_the_hold(client, db, tenant, leaver):
    """Once an operator reactivated the user, the IdP's own deprovisioning and reactivation
    work as ever."""
    key = make_key(db, "operator")
    assert client.post(DEPROVISION.format(leaver.user_id), headers=key.headers).status_code \
        == 201
    assert client.post(REACTIVATE.format(leaver.user_id), headers=key.headers).status_code \
        in (200, 201)
    assert _state(db, leaver.user_id) == ("active", True)
    disable = client.patch(f"/scim/v2/Users/{leaver.user_id}", headers=tenant.headers, json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert disable.status_code == 200
    assert _state(db, leaver.user_id) == ("deprovisioned", False)
    enable = _entra_enable(client, tenant, leaver.user_id)
    assert enable.get_json(force=True)["active"] is True
    assert _state(db, leaver.user_id) == ("active", True)
    assert _count(db, "SELECT count(*) FROM audit_events WHERE action = "
                      "'user:reactivate_held'") == 0


def test_an_idps_own_deprovisioning_is_undone_by_its_active_true(client, db, tenant, leaver):
    """No hold without an operator: the IdP's active false, then true, reactivates."""
    disable = client.patch(f"/scim/v2/Users/{leaver.user_id}", headers=tenant.headers, json={
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "active", "value": False}]})
    assert disable.status_code == 200
    put = _okta_put(client, tenant, leaver.user_id, "Buyer")
    assert put.get_json(force=True)["active"] is True
    assert _state(db, leaver.user_id) == ("active", True)
