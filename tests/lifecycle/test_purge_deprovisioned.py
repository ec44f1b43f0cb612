"""Users deprovisioned but never deleted (Okta deactivates leavers and never deletes them)
are purged after lifecycle.deprovisioned_retention_days, when set; their deprovisioning
records and the audit chain stay and verify."""

from __future__ import annotations

import json
from datetime import timedelta

import sqlalchemy as sa

from app.db import utcnow
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.lifecycle.support import roster
from tests.scim.support import ENTERPRISE, PATCH_OP, Scim

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                               "value": False}]}


def _leavers(client, db, tenant) -> dict[str, str]:
    """ada (a group member and bob's manager) deprovisioned by SCIM, carl taken out by an
    operator's API call (held), dora deprovisioned by SCIM recently; the first two
    untouched for 400 days."""
    scim = Scim(client, tenant)
    ids = {"ada": scim.create_user("ada@acme.example")["id"]}
    ids["bob"] = scim.create_user("bob@acme.example", externalId="00u2", **{ENTERPRISE: {
        "manager": {"value": ids["ada"]}}})["id"]
    ids["carl"] = scim.create_user("carl@acme.example", externalId="00u3")["id"]
    ids["dora"] = scim.create_user("dora@acme.example", externalId="00u4")["id"]
    ids["eng"] = scim.create_group("Engineering", [ids["ada"], ids["bob"]])["id"]
    for name in ("ada", "dora"):
        assert scim.patch(f"/Users/{ids[name]}", OFF).status_code == 200
    admin = make_key(db, "admin", tenant.org)
    response = client.post(f"/api/v1/users/{ids['carl']}/deprovision",
                           json={"reason": "compromised"}, headers=admin.headers)
    assert response.status_code == 201, response.json
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE users SET updated_at = :t WHERE id IN (:a, :c)"),
                     {"t": utcnow() - timedelta(days=400), "a": ids["ada"], "c": ids["carl"]})
    return ids


def test_deprovisioned_users_are_kept_by_default(client, db, tenant, database_url):
    """Without the setting nothing deprovisioned is purged, however old."""
    ids = _leavers(client, db, tenant)
    result = roster(database_url, "lifecycle", "purge")
    assert "purged 0 user(s) deleted more than 30 day(s) ago" in result.output
    assert Scim(client, tenant).get(f"/Users/{ids['ada']}").status_code == 200


def test_deprovisioned_users_past_retention_are_purged_with_their_trail_kept(
        client, db, tenant, database_url):
    """With lifecycle.deprovisioned_retention_days 365: ada goes (404; out of its group's
    members and bob's manager, both told and their versions moved; user:purge audited),
    carl (an operator's hold) and dora (recent) stay; the records and the chain verify."""
    ids = _leavers(client, db, tenant)
    scim = Scim(client, tenant)
    group_before = scim.get(f"/Groups/{ids['eng']}").get_json()
    bob_before = scim.get(f"/Users/{ids['bob']}").get_json()
    result = roster(database_url, "lifecycle", "purge",
                    ROSTER_LIFECYCLE__DEPROVISIONED_RETENTION_DAYS="365")
    assert ("purged 1 user(s) deleted more than 30 day(s) ago or deprovisioned more than "
            "365 day(s) ago") in result.output
    assert scim.get(f"/Users/{ids['ada']}").status_code == 404
    for name in ("carl", "dora"):
        assert scim.get(f"/Users/{ids[name]}").status_code == 200
    group = scim.get(f"/Groups/{ids['eng']}").get_json()
    assert [m["value"] for m in group["members"]] == [ids["bob"]]
    assert group["meta"]["version"] != group_before["meta"]["version"]
    bob = scim.get(f"/Users/{ids['bob']}").get_json()
    assert "manager" not in bob.get(ENTERPRISE, {})
    assert bob["meta"]["version"] != bob_before["meta"]["version"]
    [purge] = rows(db, "SELECT subject_id, data FROM audit_events WHERE action = 'user:purge'")
    assert purge.subject_id == ids["ada"]
    data = purge.data if isinstance(purge.data, dict) else json.loads(purge.data)
    assert data == {"retention_days": 365, "status": "deprovisioned"}
    removed = rows(db, "SELECT aggregate_id FROM outbox_events WHERE type = "
                       "'membership.removed'")
    assert [r.aggregate_id for r in removed] == [ids["eng"]]
    auditor = make_key(db, "auditor", tenant.org)
    records = client.get(f"/api/v1/deprovisions?user_id={ids['ada']}", headers=auditor.headers)
    assert len(records.json["items"]) == 1
    output = roster(database_url, "audit", "verify", "--org", "acme").output
    assert "ok   deprovisioning records: 3 records, 3 matching" in output
    again = roster(database_url, "lifecycle", "purge", "--deprovisioned-retention-days", "365")
    assert "purged 0 user(s)" in again.output
    bad = roster(database_url, "lifecycle", "purge", "--deprovisioned-retention-days", "-1",
                 ok=False)
    assert "must not be negative" in bad.output
