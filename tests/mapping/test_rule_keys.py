"""Rule documents refuse keys that do not belong, naming the key, and surrounding white space
in patterns; rule ids are one name in any case. Over the /api/v1 mapping routes."""

from __future__ import annotations

import pytest

from app.mapping.ruleset import rules_of
from app.models.mapping import MappingRule
from tests.api.conftest import make_key
from tests.conftest import rows

BUYERS = {"id": "buyers", "role": "buyer", "unit": "Engineering", "match": {"group": "Buyers"}}


@pytest.fixture
def admin(world):
    """Authorization headers of the tenant's admin key."""
    return make_key(world.db, "admin", world.tenant.org).headers


def stored_rules(world):
    """How many rules are stored."""
    return rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n


@pytest.mark.parametrize(("match", "field", "detail"), [
    # present = true matched any title; the glob was silently ignored.
    ({"attribute": "title", "present": True, "match": "glob"},
     "rules[0].match.match", "not with present"),
    ({"attribute": "title", "value": "Boss*", "mach": "glob"},
     "rules[0].match.mach", "unknown key"),
    ({"attribute": "title", "present": True, "equals": "Boss"},
     "rules[0].match.equals", "unknown key"),
    ({"any": [{"group": "A"}, {"group": "B", "attribute": "title", "value": "x"}]},
     "rules[0].match.any[1].attribute", "this one has group and attribute"),
    ({"all": [{"group": "A"}], "not": {"group": "B"}},
     "rules[0].match.not", "this one has all and not"),
    ({"not": {"group": "A", "by": "displayName", "matches": "glob"}},
     "rules[0].match.not.matches", "unknown key"),
])
def test_keys_that_do_not_belong_in_a_condition_are_a_400_naming_them(
        world, client, admin, match, field, detail):
    """A typo or a mixed condition is refused where it is, never read as something else."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    body = {"rules": [{**BUYERS, "match": match}]}
    for res in (client.put(url, json=body, headers=admin),
                client.post(url + ":preview", json=body, headers=admin)):
        assert res.status_code == 400, res.json
        assert res.json["errors"] == [{"field": field, "detail": res.json["detail"]}]
        assert detail in res.json["detail"]
    res = client.post(url + "/rules", json={"rule": {**BUYERS, "match": match}}, headers=admin)
    assert res.status_code == 400, res.json
    assert res.json["errors"][0]["field"] == field.replace("rules[0]", "rule")
    assert stored_rules(world) == 0


@pytest.mark.parametrize(("body", "field"), [
    ({"rules": [{**BUYERS, "unit_form": {"attribute": "department"}}]}, "rules[0].unit_form"),
    ({"rules": [{**BUYERS, "unit": None, "unit_from": {"attribute": "department",
                                                       "undr": "Departments"}}]},
     "rules[0].unit_from.undr"),
    ({"policy": {"on_los": "suspend"}, "rules": [BUYERS]}, "policy.on_los"),
])
def test_unknown_keys_at_every_level_name_the_key(world, client, admin, body, field):
    """Rules, unit_from and policy name the unknown key as conditions do."""
    if body["rules"][0].get("unit") is None:
        del body["rules"][0]["unit"]
    res = client.put(f"/api/v1/orgs/{world.org_id}/mapping", json=body, headers=admin)
    assert res.status_code == 400, res.json
    assert res.json["errors"][0]["field"] == field
    assert "unknown key" in res.json["detail"]
    assert stored_rules(world) == 0


def test_a_stored_present_condition_with_a_match_kind_still_loads():
    """Only new writes are held to it: a stored rule that has one loads, matching as it did."""
    [rule] = rules_of([{**BUYERS, "match": {"attribute": "title", "present": True,
                                            "match": "glob"}}])
    assert rule.condition.present is True
    assert rule.disabled is None


@pytest.mark.parametrize(("match", "field"), [
    ({"group": "Buyers "}, "rules[0].match.group"),
    ({"group": " Buyers-*", "match": "glob"}, "rules[0].match.group"),
    ({"group": "00g1abc\t", "by": "externalId"}, "rules[0].match.group"),
    ({"attribute": "department", "value": "Sales "}, "rules[0].match.value"),
    ({"not": {"attribute": "locality", "value": ["Tokyo", " Osaka"]}},
     "rules[0].match.not.value[1]"),
])
def test_patterns_with_surrounding_white_space_are_a_400(world, client, admin, match, field):
    """SCIM keeps "Buyers " as sent: a rule's "Buyers " matched no group "Buyers", silently."""
    world.group("Buyers", [world.user("ada")])
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    body = {"rules": [{**BUYERS, "match": match}]}
    for res in (client.put(url, json=body, headers=admin),
                client.post(url + ":preview", json=body, headers=admin)):
        assert res.status_code == 400, res.json
        assert res.json["errors"] == [{"field": field, "detail": res.json["detail"]}]
        assert "white space" in res.json["detail"]
    assert stored_rules(world) == 0


def test_a_glob_or_regex_still_names_a_group_whose_name_has_the_space(world, client, admin):
    """SCIM keeps a group "Buyers " as sent; a class in a glob or a regex still matches it."""
    ada, bob = world.user("ada"), world.user("bob")
    world.group("Buyers ", [ada])
    world.group("Buyers", [bob])
    for match in ({"group": "Buyers[ ]", "match": "glob"},
                  {"group": "Buyers ", "match": "regex"}):
        res = client.put(f"/api/v1/orgs/{world.org_id}/mapping", headers=admin,
                         json={"rules": [{**BUYERS, "match": match}]})
        assert res.status_code == 200, res.json
        assert [r.user_id for r in rows(world.db, "SELECT user_id FROM grants")] == [ada]


def test_a_stored_pattern_with_white_space_still_loads_and_matches_as_it_did():
    """Only new writes are refused: a stored "Buyers " loads and still names "Buyers "."""
    [rule] = rules_of([{**BUYERS, "match": {"group": "Buyers "}}])
    assert rule.condition.value == "Buyers "
    assert rule.disabled is None


def test_rule_ids_differing_only_in_case_are_refused(world, client, admin):
    """`buyers` and `Buyers` are one name to whoever reads the rules: a 400 on a whole rule
    set naming the second, a 409 on adding one, a 404 that names the stored id."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    body = {"rules": [BUYERS, {**BUYERS, "id": "Buyers", "unit": "Departments"}]}
    for res in (client.put(url, json=body, headers=admin),
                client.post(url + ":preview", json=body, headers=admin)):
        assert res.status_code == 400, res.json
        assert res.json["errors"][0]["field"] == "rules[1].id"
        assert "'Buyers' is 'buyers' in another case" in res.json["detail"]
    assert stored_rules(world) == 0
    assert client.put(url, json={"rules": [BUYERS]}, headers=admin).status_code == 200
    res = client.post(url + "/rules", json={"rule": {**BUYERS, "id": "BUYERS"}}, headers=admin)
    assert res.status_code == 409, res.json
    assert "'buyers' already exists" in res.json["detail"]
    res = client.delete(url + "/rules/BUYERS", headers=admin)
    assert res.status_code == 404
    assert "'buyers'" in res.json["detail"]
    assert rows(world.db, "SELECT key FROM mapping_rules")[0].key == "buyers"


def test_a_stored_rule_set_with_ids_in_two_cases_loads_and_can_be_fixed(world, client, admin):
    """Stored before the check: it loads and evaluates, and removing one makes it valid."""
    ada = world.user("ada")
    world.group("Buyers", [ada])
    with world.db.transaction() as s:
        for key, unit in (("buyers", "Engineering"), ("Buyers", "Departments")):
            s.add(MappingRule(organization_id=world.org_id, key=key, priority=0,
                              description="", role_key="buyer", match={"group": "Buyers"},
                              unit={"unit": unit}, parameters={}))
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    res = client.get(url, headers=admin)
    assert sorted(r["id"] for r in res.json["rules"]) == ["Buyers", "buyers"]
    res = client.post(url + ":preview", json={"rules": res.json["rules"]}, headers=admin)
    assert res.status_code == 400  # a new write of the same set is refused
    res = client.delete(url + "/rules/Buyers", headers=admin)
    assert res.status_code == 200, res.json
    assert [(r.key, r.path) for r in rows(
        world.db, "SELECT roles.key, units.path FROM grants JOIN roles ON roles.id = "
        "grants.role_id JOIN units ON units.id = grants.unit_id")] == [("buyer", "Engineering")]


def test_equal_priorities_are_decided_by_the_id_first_in_code_point_order(world, client, admin):
    """As README says: `b10` sorts before `b9`, and decides; the other is also_matched."""
    ada = world.user("ada")
    world.group("Buyers", [ada])
    rules = [{**BUYERS, "id": "b9", "priority": 5}, {**BUYERS, "id": "b10", "priority": 5}]
    res = client.put(f"/api/v1/orgs/{world.org_id}/mapping", json={"rules": rules},
                     headers=admin)
    assert res.status_code == 200, res.json
    [grant] = client.get(f"/api/v1/users/{ada}/access", headers=admin).json["grants"]
    assert grant["why"]["rule"] == "b10"
    assert grant["why"]["also_matched"] == ["b9"]
