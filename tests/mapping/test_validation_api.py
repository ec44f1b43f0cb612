"""Small gaps of the rules and roles API, each a 400 problem naming the field over HTTP:
empty value lists, empty default_role, unknown parameter keys, repeated permissions and
repeated query parameters."""

from __future__ import annotations

import pytest

from app.mapping.ruleset import rules_of
from tests.api.conftest import make_key
from tests.conftest import rows

BUYERS = {"id": "buyers", "role": "buyer", "unit": "Engineering", "match": {"group": "Buyers"}}


@pytest.fixture
def admin(world):
    """Authorization headers of the tenant's admin key."""
    return make_key(world.db, "admin", world.tenant.org).headers


@pytest.mark.parametrize(("body", "field", "detail"), [
    ({"rules": [{**BUYERS, "match": {"attribute": "department", "value": []}}]},
     "rules[0].match.value", "non-empty list"),
    ({"rules": [{**BUYERS, "match": {"not": {"attribute": "department", "value": [],
                                             "match": "glob"}}}]},
     "rules[0].match.not.value", "non-empty list"),
    ({"rules": [{**BUYERS, "match": {"attribute": "department", "match": "regex",
                                     "value": [f"d{i}.*" for i in range(101)]}}]},
     "rules[0].match.value", "at most 100 values"),
    ({"policy": {"default_role": "", "default_unit": "Engineering"}, "rules": [BUYERS]},
     "policy.default_role", "non-empty string"),
    ({"policy": {"default_role": "", "default_unit": ""}, "rules": [BUYERS]},
     "policy.default_role", "non-empty string"),
    ({"policy": {"default_role": "buyer", "default_unit": " "}, "rules": [BUYERS]},
     "policy.default_unit", "non-empty string"),
])
def test_empty_values_in_rule_sets_are_a_400(world, client, admin, body, field, detail):
    """An empty value list (under `not`: everyone) or an empty default is never accepted."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    for res in (client.put(url, json=body, headers=admin),
                client.post(url + ":preview", json=body, headers=admin)):
        assert res.status_code == 400, res.json
        assert res.json["errors"][0]["field"] == field
        assert detail in res.json["detail"]
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


def test_stored_empty_value_list_still_loads():
    """A rule an older release stored with an empty list loads (matching as it did)."""
    [rule] = rules_of([{**BUYERS, "match": {"attribute": "department", "value": []}}])
    assert rule.condition.values == ()
    assert rule.disabled is None


@pytest.mark.parametrize(("parameters", "permissions", "field", "detail"), [
    ({"limit": {"type": "int", "default": 3, "defualt": 4}}, ["orders.place"],
     "parameters.limit", "unknown keys defualt"),
    ({"limit": {"type": "bool", "default": True, "min": 0}}, ["orders.place"],
     "parameters.limit", "unknown keys min"),
    ({}, ["orders.place", "quotes.request", "orders.place"], "permissions",
     "given more than once: orders.place"),
    # Counted once each (a list of 16,000 took 10 s to refuse).
    ({}, ["orders.place"] * 16_000, "permissions", "given more than once: orders.place"),
])
def test_role_declaration_gaps_are_a_400(world, client, admin, parameters, permissions, field,
                                         detail):
    """Unknown keys in a parameter declaration and repeated permissions are refused."""
    res = client.post(f"/api/v1/orgs/{world.org_id}/roles", headers=admin, json={
        "key": "night_buyer", "name": "Night buyer", "permissions": permissions,
        "parameters": parameters})
    assert res.status_code == 400, res.json
    assert res.json["errors"] == [{"field": field, "detail": res.json["detail"]}]
    assert detail in res.json["detail"]
    assert rows(world.db, "SELECT count(*) AS n FROM roles WHERE key = 'night_buyer'"
                )[0].n == 0


@pytest.mark.parametrize("query", ["limit=2&limit=3", "cursor=a&limit=5&cursor=b",
                                   "custom=true&custom=false"])
def test_repeated_query_parameter_is_a_400(world, client, admin, query):
    """?limit=2&limit=3 on a list endpoint is a 400 naming the parameter, not limit=2."""
    res = client.get(f"/api/v1/orgs/{world.org_id}/roles?{query}", headers=admin)
    assert res.status_code == 400, res.json
    assert res.content_type == "application/problem+json"
    name = query.split("=")[0]
    assert res.json["errors"] == [{"field": name, "detail": "given more than once"}]
    assert res.json["detail"] == f"query parameter given more than once: {name}"
    assert client.get(f"/api/v1/orgs/{world.org_id}/roles?limit=2",
                      headers=admin).status_code == 200


def test_missing_unit_from_parent_names_under(world, client, admin):
    """A `unit_from.under` naming no unit (without create_unit) is a 400 on that field, in a
    dry run and an apply alike; it named `unit`, a key the rule does not have."""
    rule = {"id": "buyers", "role": "buyer", "match": {"group": "Buyers"},
            "unit_from": {"attribute": "department", "under": "Nowhere"}}
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    for res in (client.post(url + ":preview", json={"rules": [rule]}, headers=admin),
                client.put(url, json={"rules": [rule]}, headers=admin)):
        assert res.status_code == 400, res.json
        assert res.content_type == "application/problem+json"
        assert res.json["errors"] == [{"field": "rules[0] (buyers).unit_from.under",
                                       "detail": res.json["detail"]}]
        assert "unit 'Nowhere' does not exist" in res.json["detail"]
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


def test_rule_set_holds_at_most_10000_conditions(world, client, admin):
    """Conditions are bounded per rule set (each is evaluated for every user a SCIM write
    touches): 10,000 are taken, one more is a 400 naming where the limit is crossed. An
    `any` of 60,000 groups was stored, and each write of a user then took seconds."""
    def rule(rule_id: str, count: int) -> dict:
        return {"id": rule_id, "role": "buyer", "unit": "Engineering",
                "match": {"any": [{"group": f"Team {rule_id} {i}"} for i in range(count)]}}

    url = f"/api/v1/orgs/{world.org_id}/mapping"
    ok = {"rules": [rule("a", 5_999), rule("b", 3_999)]}  # 10,000 with the two `any`
    assert client.post(url + ":preview", json=ok, headers=admin).status_code == 200
    too_many = {"rules": [rule("a", 5_999), rule("b", 4_000)]}
    for res in (client.post(url + ":preview", json=too_many, headers=admin),
                client.put(url, json=too_many, headers=admin)):
        assert res.status_code == 400, res.json
        assert res.json["errors"] == [{"field": "rules[1].match.any[3999]",
                                       "detail": res.json["detail"]}]
        assert "at most 10,000 conditions" in res.json["detail"]
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0
    res = client.post(url + "/rules", json={"rule": rule("b", 4_000)}, headers=admin)
    assert res.status_code == 201, res.json
    res = client.post(url + "/rules", json={"rule": rule("a", 5_999)}, headers=admin)
    assert res.status_code == 400, res.json
    assert "at most 10,000 conditions" in res.json["detail"]


@pytest.mark.parametrize(("method", "path", "rule", "field", "detail"), [
    ("post", "/rules", {**BUYERS, "id": "new", "role": "pilot"}, "rule.role",
     "unknown role 'pilot'"),
    ("post", "/rules", {**BUYERS, "id": "new", "unit": "Nowhere"}, "rule.unit",
     "unit 'Nowhere' does not exist"),
    ("put", "/rules/finance", {**BUYERS, "id": "finance", "role": "pilot"}, "rule.role",
     "unknown role 'pilot'"),
    ("put", "/rules/finance", {**BUYERS, "id": "finance", "match": {"grp": "x"}},
     "rule.match", "must contain one of group"),
    ("put", "/rules/finance", {**BUYERS, "id": "finance", "parameters": {
        "spending_limit": {"amount": "-1", "currency": "EUR"}}},
     "rule.parameters.spending_limit.amount", "must not be negative"),
])
def test_one_rule_edit_errors_name_the_bodys_rule(world, client, admin, method, path, rule,
                                                  field, detail):
    """A 400 about the rule a one-rule edit sends names the body's field (`rule.role`);
    it named the rule's place in the stored list (`rules[2] (new).role`), never sent."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    finance = {"id": "finance", "role": "finance", "unit": "Engineering",
               "match": {"group": "Finance"}}
    assert client.put(url, json={"rules": [BUYERS, finance]}, headers=admin).status_code == 200
    res = getattr(client, method)(url + path, json={"rule": rule}, headers=admin)
    assert res.status_code == 400, res.json
    assert res.content_type == "application/problem+json"
    assert res.json["errors"] == [{"field": field, "detail": res.json["detail"]}]
    assert res.json["detail"].startswith(f"{field}: ")
    assert detail in res.json["detail"]
    assert [r["id"] for r in client.get(url, headers=admin).json["rules"]] == ["buyers",
                                                                               "finance"]
