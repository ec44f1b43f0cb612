"""One grant's amounts share one currency: a Buyer rule whose spending_limit is in USD while
its approval_threshold keeps the role's 500 EUR is refused naming the rule."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.mapping.rules import (
    GroupFacts,
    GroupMatch,
    Policy,
    RoleFacts,
    RuleSpec,
    UnitIndex,
    UnitTarget,
    UserFacts,
    resolve_grants,
)
from tests.api.conftest import make_key
from tests.conftest import rows

register()
EUR_1000 = {"amount": "1000.00", "currency": "EUR"}
USD_LIMIT = {"spending_limit": {"amount": "5000.00", "currency": "USD"}}


@pytest.fixture
def admin(world):
    """Authorization headers of the tenant's admin key."""
    return make_key(world.db, "admin", world.tenant.org).headers


def _rule(parameters: dict) -> dict:
    return {"id": "buyers", "role": "buyer", "unit": "Engineering",
            "match": {"group": "Buyers"}, "parameters": parameters}


def _stored_rules(world) -> int:
    return rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n


def test_a_limit_in_another_currency_than_the_default_threshold_is_refused(world, client,
                                                                            admin):
    """PUT, preview and a one-rule add of spending_limit 5000 USD (approval_threshold left
    at the role's 500 EUR): a 400 naming the rule's parameters and both currencies (before:
    stored, and the portal got a grant mixing USD and EUR)."""
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    doc = {"rules": [_rule(USD_LIMIT)]}
    for res, field in ((client.put(url, json=doc, headers=admin),
                        "rules[0] (buyers).parameters"),
                       (client.post(url + ":preview", json=doc, headers=admin),
                        "rules[0] (buyers).parameters"),
                       (client.post(url + "/rules", json={"rule": _rule(USD_LIMIT)},
                                    headers=admin), "rule.parameters")):
        assert res.status_code == 400, res.json
        assert res.json["errors"] == [{"field": field, "detail": res.json["detail"]}]
        detail = res.json["detail"]
        assert "spending_limit in USD" in detail
        assert "approval_threshold in EUR (the role's default)" in detail
    assert _stored_rules(world) == 0


def test_two_given_amounts_in_two_currencies_are_refused(world, client, admin):
    """Both amounts given, one in USD and one in EUR: 400 naming the rule."""
    params = {**USD_LIMIT, "approval_threshold": {"amount": "100", "currency": "EUR"}}
    res = client.put(f"/api/v1/orgs/{world.org_id}/mapping",
                     json={"rules": [_rule(params)]}, headers=admin)
    assert res.status_code == 400, res.json
    assert "approval_threshold in EUR" in res.json["detail"]
    assert "(the role's default)" not in res.json["detail"]


@pytest.mark.parametrize("parameters", [
    {**USD_LIMIT, "approval_threshold": {"amount": "250.00", "currency": "USD"}},
    # Below the 500 EUR threshold: orders never need approval, which a buyer may be given.
    {"spending_limit": {"amount": "300.00", "currency": "EUR"}},
])
def test_one_currency_is_accepted_in_any_order(world, client, admin, parameters):
    """Amounts in one currency are stored, a limit below the threshold included."""
    res = client.put(f"/api/v1/orgs/{world.org_id}/mapping",
                     json={"rules": [_rule(parameters)]}, headers=admin)
    assert res.status_code == 200, res.json
    assert _stored_rules(world) == 1


def test_a_rule_file_mixing_currencies_is_refused_by_the_cli(world, tmp_path):
    """`roster mapping apply` of a TOML rule giving spending_limit in USD: exit 1, the
    rule named, nothing stored."""
    path = tmp_path / "rules.toml"
    path.write_text('[[rules]]\nid = "buyers"\nrole = "buyer"\nunit = "Engineering"\n'
                    'match = { group = "Buyers" }\n'
                    'parameters = { spending_limit = { amount = "5000", currency = "USD" } }\n')
    result = CliRunner().invoke(cli, ["mapping", "apply", str(path), "--org", "acme"],
                                env={"ROSTER_DATABASE__URL": world.db.url})
    assert result.exit_code == 1, result.output
    assert "rules[0] (buyers).parameters" in result.output
    assert _stored_rules(world) == 0


def test_a_custom_role_with_defaults_in_two_currencies_is_refused(world, client, admin):
    """POST /roles whose two money defaults are in EUR and USD: 400 on `parameters`."""
    res = client.post(f"/api/v1/orgs/{world.org_id}/roles", headers=admin, json={
        "key": "night_buyer", "name": "Night buyer", "permissions": ["orders.place"],
        "parameters": {
            "limit": {"type": "money", "default": {"amount": "300", "currency": "EUR"}},
            "threshold": {"type": "money", "default": {"amount": "100", "currency": "USD"}}}})
    assert res.status_code == 400, res.json
    assert res.json["errors"][0]["field"] == "parameters"
    assert "limit in EUR" in res.json["detail"]


def test_two_buyer_rules_with_different_limits_are_decided_by_priority_then_id():
    """Two rules giving one user Buyer in one unit with different limits: one grant, the
    higher priority's limit (at equal priority the id first in code-point order), the other
    rule in `also_matched`; in two units, two grants, each with its rule's limit."""
    buyer = RoleFacts("buyer", {"spending_limit": {"type": "money", "default": EUR_1000}})
    units = UnitIndex.of({"Engineering": "u1", "Departments": "u2"})

    def rule(rule_id: str, priority: int, amount: str, unit: str = "Engineering") -> RuleSpec:
        return RuleSpec(rule_id, priority, GroupMatch("Buyers"), "buyer", UnitTarget(unit),
                        {"spending_limit": {"amount": amount, "currency": "EUR"}})

    def grants(*rules: RuleSpec) -> list[tuple[str, str, str, list[str]]]:
        return [(g.unit_path, g.rule_id or "", g.parameters["spending_limit"]["amount"],
                 g.reason.get("also_matched", [])) for g in resolve_grants(
                    UserFacts("u"), [GroupFacts("g", "Buyers")], rules, {"buyer": buyer},
                    units, Policy())]

    assert grants(rule("small", 10, "100"), rule("big", 5, "9000")) == [
        ("Engineering", "small", "100", ["big"])]
    assert grants(rule("b", 5, "100"), rule("a", 5, "9000")) == [
        ("Engineering", "a", "9000", ["b"])]
    assert grants(rule("a", 5, "100"), rule("b", 5, "9000", "Departments")) == [
        ("Departments", "b", "9000", []), ("Engineering", "a", "100", [])]
