"""Every trigger in every IdP dialect, end to end through the real interfaces (issue 7):
SCIM active=false, SCIM DELETE, losing the last mapped group over SCIM, disabling the
directory over the API, the operator over the API; for Okta and both Entra dialects (legacy
and aadOptscim062020). Each checks the status, the revoked rows, the audit records, the
outbox events, the record and its receipt, verified offline with `roster audit verify-receipt`.
"""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import make_key
from tests.conftest import Tenant, rows
from tests.lifecycle.support import add_sessions_and_tokens, mapped_tenant, roster
from tests.scim.support import PATCH_OP, Scim

# dialect -> (vendor, tenant URL query, active=false operations, member removal operations)
DIALECTS = {
    "okta": ("okta", "", [{"op": "replace", "value": {"active": False}}],
             lambda uid: [{"op": "remove", "path": f'members[value eq "{uid}"]'}]),
    "entra-legacy": ("entra", "", [{"op": "Replace", "path": "active", "value": "False"}],
                     lambda uid: [{"op": "Remove", "path": "members",
                                   "value": [{"value": uid}]}]),
    "entra-compliant": ("entra", "?aadOptscim062020",
                        [{"op": "replace", "path": "active", "value": False}],
                        lambda uid: [{"op": "remove", "path": f'members[value eq "{uid}"]'}]),
}


def _expected_dialect(trigger: str, dialect: str) -> str | None:
    """What the record says: the IdP's dialect as its request showed it (a DELETE or an
    RFC-shaped member removal shows none but on a flagged Entra URL: "standard"); the API
    triggers are not an IdP (None)."""
    if trigger in ("directory_disabled", "operator"):
        return None
    if trigger == "scim_active_false" or dialect == "entra-compliant":
        return dialect
    # Entra's legacy member removal (op "Remove", a value list) is recognised by its shape.
    return dialect if (trigger, dialect) == ("lost_all_grants", "entra-legacy") else "standard"

TRIGGERS = ["scim_active_false", "scim_delete", "lost_all_grants", "directory_disabled",
            "operator"]
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


def _pull_trigger(client, db, scim: Scim, tenant: Tenant, trigger: str, dialect: str,
                  user_id: str, group_id: str):
    """Cause the deprovisioning the way its trigger really arrives."""
    _, query, off, removal = DIALECTS[dialect]
    headers = {"X-Request-ID": f"req-{trigger}", "User-Agent": "IdP/1.0"}
    if trigger == "scim_active_false":
        return scim.patch(f"/Users/{user_id}{query}", {"schemas": [PATCH_OP],
                                                       "Operations": off}, headers=headers)
    if trigger == "scim_delete":
        return scim.delete(f"/Users/{user_id}{query}", headers=headers)
    if trigger == "lost_all_grants":
        return scim.patch(f"/Groups/{group_id}{query}", {
            "schemas": [PATCH_OP], "Operations": removal(user_id)}, headers=headers)
    if trigger == "directory_disabled":
        admin = make_key(db, "admin", tenant.org)
        return client.post(f"/api/v1/orgs/{tenant.org.id}/directories/{tenant.directory.id}"
                           "/disable", headers={**admin.headers, **headers})
    operator = make_key(db, "operator")
    return client.post(f"/api/v1/users/{user_id}/deprovision", headers={
        **operator.headers, **headers}, json={"reason": "left, ticket HR-1"})


@pytest.mark.parametrize("dialect", sorted(DIALECTS))
@pytest.mark.parametrize("trigger", TRIGGERS)
def test_trigger_takes_the_user_out_and_proves_it(client, db, database_url, tmp_path,
                                                  trigger, dialect):
    """Status, no live session/token/grant, audit and outbox events, the record naming the
    trigger, vendor and request, and a receipt that verifies offline."""
    vendor, query, _, _ = DIALECTS[dialect]
    tenant = mapped_tenant(db, vendor)
    scim = Scim(client, tenant)
    created = scim.post(f"/Users{query}", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0"
                                                        ":User"], "userName": "leaver@acme.example",
                                            "externalId": "x-leaver", "active": True})
    assert created.status_code == 201, created.get_json()
    user_id = created.get_json()["id"]
    group = scim.post(f"/Groups{query}", {"schemas": [GROUP], "displayName": "Buyers",
                                          "members": [{"value": user_id}]})
    assert group.status_code == 201, group.get_json()
    with db.transaction() as session:
        add_sessions_and_tokens(session, tenant.org.id, user_id)
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=user_id)[0][0] == 1

    response = _pull_trigger(client, db, scim, tenant, trigger, dialect, user_id,
                             group.get_json()["id"])
    assert response.status_code in (200, 201, 204), response.get_data(as_text=True)

    deleted = trigger == "scim_delete"
    [user] = rows(db, "SELECT status, active FROM users WHERE id = :u", u=user_id)
    assert (user.status, bool(user.active)) == ("deleted" if deleted else "deprovisioned",
                                                False)
    if trigger != "directory_disabled":  # a disabled directory answers no SCIM request
        assert scim.get(f"/Users/{user_id}").status_code == (404 if deleted else 200)
    for table in ("login_sessions", "issued_tokens"):
        assert rows(db, f"SELECT count(*) FROM {table} WHERE user_id = :u AND "
                        "revoked_at IS NULL", u=user_id)[0][0] == 0
    assert rows(db, "SELECT count(*) FROM grants WHERE user_id = :u", u=user_id)[0][0] == 0

    [record] = rows(db, "SELECT * FROM deprovision_records WHERE user_id = :u", u=user_id)
    assert (record.trigger, record.vendor, record.outcome) == (
        "scim_delete" if deleted else trigger, vendor, "applied")
    assert (record.sessions_revoked, record.tokens_revoked) == (2, 3)
    assert (record.request_id, record.user_agent) == (f"req-{trigger}", "IdP/1.0")
    assert record.revocation_committed_at is not None
    assert record.latency_ms >= 0
    assert record.dialect == _expected_dialect(trigger, dialect)
    assert record.actor_type == ("api_key" if trigger in ("directory_disabled", "operator")
                                 else "scim_token")
    assert record.reason == ("left, ticket HR-1" if trigger == "operator" else None)

    actions = [r.action for r in rows(db, "SELECT action FROM audit_events WHERE "
                                          "subject_id = :u ORDER BY seq", u=user_id)]
    assert {"user:deprovision", "session:revoke"} <= set(actions)
    audited = rows(db, "SELECT data FROM audit_events WHERE action = 'user:deprovision' "
                       "AND subject_id = :u", u=user_id)
    assert [_data(a.data)["trigger"] for a in audited] == [record.trigger]
    assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'grant:remove'")[0][0] \
        >= 1
    if trigger == "directory_disabled":
        assert rows(db, "SELECT count(*) FROM audit_events WHERE action = 'directory:disable' "
                        "AND subject_id = :d", d=tenant.directory.id)[0][0] == 1
    types = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u "
                                      "ORDER BY id", u=user_id)]
    assert types.count("user.deprovisioned") == 1
    assert types.count("session.revoked") == 2
    assert "grant.removed" in types
    assert types.index("grant.removed") < types.index("user.deprovisioned")

    auditor = make_key(db, "auditor", tenant.org)
    receipt = client.get(f"/api/v1/deprovisions/{record.id}/receipt", headers=auditor.headers)
    assert receipt.status_code == 200
    (tmp_path / "receipt.json").write_text(json.dumps(receipt.get_json()))
    (tmp_path / "key.pem").write_text(roster(database_url, "audit", "public-key").output)
    verified = roster(database_url, "audit", "verify-receipt", str(tmp_path / "receipt.json"),
                      "--public-key", str(tmp_path / "key.pem"))
    assert f"deprovisioning {record.id} of leaver@acme.example ({record.trigger})" in \
        verified.output


def _data(value):
    return value if isinstance(value, dict) else json.loads(value)
