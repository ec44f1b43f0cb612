"""`noun:*` in an export's action filter (`roster audit export --action user:*`,
``GET /api/v1/audit/export?action=user:*``) selects by prefix, as the audit list does."""

from __future__ import annotations

import json

from tests.api.conftest import make_key
from tests.lifecycle.support import roster
from tests.scim.support import PATCH_OP, Scim

OFF = {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active",
                                               "value": False}]}


def _actions(text: str) -> list[str]:
    return [json.loads(line)["action"] for line in text.splitlines()]


def test_an_exports_action_prefix_selects_as_the_lists_does(client, db, tenant, database_url):
    """`user:*` exported every user event, not none (a SIEM export filtered so came back
    empty, its position moved past what it never held); exact actions and the case of
    the noun still count."""
    scim = Scim(client, tenant)
    user_id = scim.create_user("leaver@acme.example")["id"]
    assert scim.patch(f"/Users/{user_id}", OFF).status_code == 200
    auditor = make_key(db, "auditor", tenant.org).headers
    listed = client.get("/api/v1/audit?action=user:*&limit=200", headers=auditor).json["items"]
    expected = sorted(e["action"] for e in listed)
    assert {"user:create", "user:deprovision"} <= set(expected)
    response = client.get("/api/v1/audit/export?format=jsonl&action=user:*", headers=auditor)
    assert response.status_code == 200
    assert sorted(_actions(response.get_data(as_text=True))) == expected
    cli = roster(database_url, "audit", "export", "--org", "acme", "--action", "user:*")
    assert sorted(_actions(cli.output)) == expected
    assert _actions(roster(database_url, "audit", "export", "--org", "acme", "--action",
                           "user:deprovision").output) == ["user:deprovision"]
    assert roster(database_url, "audit", "export", "--org", "acme", "--action",
                  "USER:*").output == ""
