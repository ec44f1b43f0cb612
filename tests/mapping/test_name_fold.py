"""Group names and attribute values in rules ignore case as SCIM does (app/folding.py, RFC
7643 §2.2 caseExact=false): over SCIM and the rule-set API, a rule names exactly the groups
SCIM takes for that name. `str.casefold` joined `Straße` and `STRASSE` (two groups to SCIM)
and kept `İSTANBUL` apart from `istanbul` (one name to SCIM)."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_key
from tests.conftest import rows
from tests.scim.support import ENTERPRISE, Scim


@pytest.fixture
def admin(world):
    """Authorization headers of the tenant's admin key."""
    return make_key(world.db, "admin", world.tenant.org).headers


def _grants(world) -> list[tuple[str, str]]:
    return [(r.user_name, r.key) for r in rows(
        world.db, "SELECT users.user_name, roles.key FROM grants JOIN users ON users.id = "
        "grants.user_id JOIN roles ON roles.id = grants.role_id ORDER BY 1, 2")]


def _rule(rule_id: str, role: str, match: dict) -> dict:
    return {"id": rule_id, "role": role, "unit": "Engineering", "match": match}


def test_rules_fold_names_as_scim_does(world, client, admin):
    """`istanbul buyers` (exact and glob) names the group `İSTANBUL Buyers` and a department
    `İstanbul`; `STRASSE` names the group `STRASSE`, not `Straße`, and `Stra?e` the other."""
    scim = Scim(client, world.tenant)
    ipek = scim.create_user("ipek@acme.example", **{ENTERPRISE: {"department": "İstanbul"}})
    hans = scim.create_user("hans@acme.example")
    emma = scim.create_user("emma@acme.example")
    scim.create_group("İSTANBUL Buyers", [ipek["id"]])
    scim.create_group("Straße", [hans["id"]])
    scim.create_group("STRASSE", [emma["id"]])
    body = {"rules": [
        _rule("exact", "buyer", {"group": "istanbul buyers"}),
        _rule("glob", "technician", {"group": "?stanbul b*", "match": "glob"}),
        _rule("department", "finance", {"attribute": "department", "value": "istanbul"}),
        _rule("strasse", "approver", {"group": "STRASSE"}),
        _rule("strasse-glob", "quote_only", {"group": "stra?e", "match": "glob"}),
    ]}
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    preview = client.post(url + ":preview", json=body, headers=admin)
    assert preview.status_code == 200, preview.json
    assert preview.json["totals"]["grants_added"] == 5
    res = client.put(url, json=body, headers=admin)
    assert res.status_code == 200, res.json
    assert _grants(world) == [
        ("emma@acme.example", "approver"),
        ("hans@acme.example", "quote_only"),
        ("ipek@acme.example", "buyer"), ("ipek@acme.example", "finance"),
        ("ipek@acme.example", "technician"),
    ]


def test_rules_name_a_group_in_either_unicode_normalization(world, client, admin):
    """A group pushed in NFD (`O` plus a combining diaeresis) is named by a rule written in
    NFC, exact and glob (`?` is one letter, as SCIM counts it after normalization)."""
    import unicodedata

    scim = Scim(client, world.tenant)
    emma = scim.create_user("emma@acme.example")
    scim.create_group(unicodedata.normalize("NFD", "Vertrieb Österreich"), [emma["id"]])
    body = {"rules": [
        _rule("exact", "buyer", {"group": "VERTRIEB ÖSTERREICH"}),
        _rule("glob", "technician", {"group": "vertrieb ?sterreich", "match": "glob"}),
    ]}
    res = client.put(f"/api/v1/orgs/{world.org_id}/mapping", json=body, headers=admin)
    assert res.status_code == 200, res.json
    assert _grants(world) == [("emma@acme.example", "buyer"),
                              ("emma@acme.example", "technician")]
