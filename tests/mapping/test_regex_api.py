"""Regex rules over HTTP and the CLI: RE2 in linear time, refusals naming the field, and
stored patterns RE2 cannot run disabled instead of failing SCIM writes."""

from __future__ import annotations

import time

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.models.mapping import MappingRule
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.scim.support import ENTERPRISE, Scim, user_body

register()


@pytest.fixture
def admin(world):
    """Authorization headers of the tenant's admin key."""
    return make_key(world.db, "admin", world.tenant.org).headers


def rule(pattern: str, rule_id: str = "r", *, group: bool = False) -> dict:
    """A buyer rule in Engineering whose condition is one regex."""
    match = {"group": pattern, "match": "regex"} if group else \
        {"attribute": "department", "value": pattern, "match": "regex"}
    return {"id": rule_id, "role": "buyer", "unit": "Engineering", "match": match}


def grants(world) -> list[str]:
    """The source of every stored grant."""
    return [r.source for r in rows(world.db, "SELECT source FROM grants ORDER BY source")]


def test_catastrophic_regex_does_not_freeze_a_scim_write(world, client, admin):
    """(a+)+$ against a 26-letter near miss took Python's re seconds per user; RE2 does not."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    assert client.put(url, json={"rules": [rule("(a+)+$")]}, headers=admin).status_code == 200
    scim = Scim(client, world.tenant)
    started = time.monotonic()
    res = scim.post("/Users", json=user_body("ann@acme.example",
                                             **{ENTERPRISE: {"department": "a" * 26 + "!"}}))
    assert res.status_code == 201, res.get_json()
    assert time.monotonic() - started < 1.5
    res = scim.post("/Users", json=user_body("bo@acme.example",
                                             **{ENTERPRISE: {"department": "aaaa"}}))
    assert res.status_code == 201
    assert grants(world) == ["rule:r"]


@pytest.mark.parametrize(("route", "body", "field", "named"), [
    ("PUT", {"rules": [rule(r"(a)\1")]}, "rules[0].match.value", "backreference"),
    (":preview", {"rules": [rule("(?=Sales)S.*", group=True)]}, "rules[0].match.group",
     "lookahead"),
    ("PUT", {"rules": [rule(r"\bSales\b")]}, "rules[0].match.value", "word boundary"),
    ("PUT", {"rules": [{**rule("x"), "match": {"attribute": "department",
                                               "value": ["ok", "(?<!a)b"],
                                               "match": "regex"}}]},
     "rules[0].match.value[1]", "lookbehind"),
    ("POST", {"rule": rule("(?>a+)b")}, "rule.match.value", "atomic group"),
])
def test_regex_re2_cannot_run_is_a_400_naming_the_field(world, client, admin, route, body,
                                                        field, named):
    """Backreferences, lookarounds, \\b, atomic groups: 400 problem naming the field."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    if route == "PUT":
        res = client.put(url, json=body, headers=admin)
    elif route == "POST":
        res = client.post(url + "/rules", json=body, headers=admin)
    else:
        res = client.post(url + route, json=body, headers=admin)
    assert res.status_code == 400, res.json
    assert res.json["errors"][0]["field"] == field
    assert named in res.json["detail"]
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


def test_cli_apply_refuses_a_regex_re2_cannot_run(world, tmp_path):
    """`roster mapping apply` (dry run too) names the field of a backreference."""
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nid = "r"\nrole = "buyer"\nunit = "Engineering"\n'
                    'match = { group = \'(B)\\1\', match = "regex" }\n')
    for extra in (["--dry-run"], []):
        result = CliRunner().invoke(
            cli, ["mapping", "apply", str(path), "--org", "acme", *extra],
            env={"ROSTER_DATABASE__URL": world.db.url}, catch_exceptions=False)
        assert result.exit_code != 0
        assert "rules[0].match.group: the pattern uses a backreference" in result.output
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


def test_stored_regex_re2_cannot_run_disables_its_rule(world, client, admin):
    """A lookahead saved before RE2 (also under `not`) matches no one: SCIM writes succeed,
    no grant comes from it, and GET /mapping and `roster mapping list` report it."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    client.put(url, json={"rules": [rule("Sales", "plain")]}, headers=admin)
    with world.db.transaction() as s:  # as an older release stored them
        for key, match in (("look", {"attribute": "department", "value": "(?=Sa)Sales",
                                     "match": "regex"}),
                           ("negated", {"not": {"group": "(?!x)x", "match": "regex"}}),
                           # Nested deeper than the translation recursed: was a 500 on
                           # every SCIM write and on GET /mapping.
                           ("deep", {"attribute": "department", "match": "regex",
                                     "value": "(" * 238 + "S" + ")" * 238})):
            s.add(MappingRule(organization_id=world.org_id, key=key, priority=1,
                              role_key="finance", match=match, parameters={},
                              unit={"unit": "Engineering", "create_unit": False,
                                    "unit_kind": "department"}))
    scim = Scim(client, world.tenant)
    res = scim.post("/Users", json=user_body("cy@acme.example",
                                             **{ENTERPRISE: {"department": "Sales"}}))
    assert res.status_code == 201, res.get_json()
    assert grants(world) == ["rule:plain"]
    body = client.get(url, headers=admin).json
    assert [d["id"] for d in body["disabled_rules"]] == ["deep", "look", "negated"]
    assert "nests more than 50" in body["disabled_rules"][0]["detail"]
    assert "lookahead" in body["disabled_rules"][1]["detail"]
    out = CliRunner().invoke(cli, ["mapping", "list", "--org", "acme"],
                             env={"ROSTER_DATABASE__URL": world.db.url}).output
    assert "! rule look is disabled (matches no one)" in out
    # Any edit re-validates the whole set: the stored pattern must be fixed first.
    res = client.post(url + "/rules", json={"rule": rule("B.*", "new")}, headers=admin)
    assert res.status_code == 400
    assert res.json["errors"][0]["field"] == "rules[0].match.value"  # look: priority 1


def test_a_rule_set_whose_regexes_weigh_too_much_is_a_400(world, client, admin):
    """Every worker keeps a rule set's regexes compiled: together they may hold 2,000,000
    RE2 instructions (Unicode \\w{3,64} alone is ~84,000). Over that, the whole rule set
    (PUT) or the rule added to it (POST) is refused, and nothing is stored."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    heavy = [rule(r"\w{3,64}" + f"-{i}", f"r{i}") for i in range(24)]
    res = client.put(url, json={"rules": heavy}, headers=admin)
    assert res.status_code == 400, res.json
    assert res.json["errors"][0]["field"] == "rules"
    assert "RE2 instructions" in res.json["detail"]
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0
    assert client.put(url, json={"rules": heavy[:22]}, headers=admin).status_code == 200
    res = client.post(url + "/rules", json={"rule": rule(r"\w{3,64}:\w{3,64}", "more")},
                      headers=admin)
    assert res.status_code == 400, res.json
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 22
    # An ordinary rule still fits.
    res = client.post(url + "/rules", json={"rule": rule(r"(?i)sales-.*", "light")},
                      headers=admin)
    assert res.status_code == 201, res.json
