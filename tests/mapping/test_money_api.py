"""Money parameters over HTTP and rule files: exact decimals, refused precisely when not a
non-negative, finite, in-range amount with the currency's decimal places."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.api.conftest import make_key
from tests.conftest import rows

register()
FIELD = "rules[0] (buyers).parameters.spending_limit.amount"


@pytest.fixture
def admin(world):
    """Authorization headers of the tenant's admin key."""
    return make_key(world.db, "admin", world.tenant.org).headers


def put_limit(client, world, admin, amount_json: str, currency: str = "EUR"):
    """PUT a one-rule set whose spending_limit amount is the raw JSON ``amount_json`` (the
    approval_threshold in the same currency: one grant's amounts share one)."""
    body = ('{"rules": [{"id": "buyers", "role": "buyer", "unit": "Engineering", '
            '"match": {"group": "Buyers"}, "parameters": {"spending_limit": '
            f'{{"amount": {amount_json}, "currency": "{currency}"}}, "approval_threshold": '
            f'{{"amount": "0", "currency": "{currency}"}}}}}}]}}')
    return client.put(f"/api/v1/orgs/{world.org_id}/mapping", data=body,
                      content_type="application/json", headers=admin)


def stored_limit(world) -> dict:
    """The spending_limit stored on the rule."""
    [row] = rows(world.db, "SELECT parameters FROM mapping_rules")
    params = row.parameters if isinstance(row.parameters, dict) else json.loads(row.parameters)
    return params["spending_limit"]


@pytest.mark.parametrize(("amount", "stored"), [
    ("1234567.10", "1234567.10"),        # a float kept "1234567.1"
    ("999999999999.99", "999999999999.99"),
    ("1e3", "1000"),                      # a float kept "1000.0"
    ("-0", "0"), ('"-0.00"', "0.00"),     # minus zero is zero, never "-0.00"
    ('"0.10"', "0.10"), ("7", "7"),
])
def test_amounts_are_stored_exactly(world, client, admin, amount, stored):
    """JSON numbers are read as exact decimals, in plain notation, places as written."""
    res = put_limit(client, world, admin, amount)
    assert res.status_code == 200, res.json
    assert stored_limit(world) == {"amount": stored, "currency": "EUR"}


@pytest.mark.parametrize(("amount", "currency", "detail"), [
    ("-5", "EUR", "must not be negative"), ('"-0.01"', "EUR", "must not be negative"),
    ("1e400", "EUR", "less than 1,000,000,000,000"),
    ("1e308", "EUR", "less than 1,000,000,000,000"),
    ("1000000000000", "EUR", "less than 1,000,000,000,000"),
    ('"1e999999999999999999999"', "EUR", "exponent out of range"),
    ('"NaN"', "EUR", "must be a finite number, not NaN"),
    ('"Infinity"', "EUR", "must be a finite number"),
    ("10.001", "EUR", "EUR allows at most 2 decimal places"),
    ('"5.5"', "JPY", "JPY allows at most 0 decimal places"),
    ("1e-3", "EUR", "at most 2 decimal places"),
    ('"1_000"', "EUR", "must be a decimal number"), ('" 5"', "EUR", "must be a decimal number"),
    ("true", "EUR", "must be a decimal number"),
])
def test_bad_amounts_are_a_400_naming_the_field(world, client, admin, amount, currency,
                                               detail):
    """Negative, non-finite, out of range or too many places: 400 naming the amount."""
    res = put_limit(client, world, admin, amount, currency)
    assert res.status_code == 400, res.json
    assert res.json["errors"] == [{"field": FIELD, "detail": res.json["detail"]}]
    assert detail in res.json["detail"]
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


@pytest.mark.parametrize("amount", [
    '"1\\u066000"',         # Arabic-Indic zero, which reads as a dot: "1.00" to the eye, 1000
    '"\\uff15\\uff10\\uff10"',  # fullwidth 500
    '"5\\u0966\\u0966.00"',   # Devanagari zeros among ASCII digits
])
def test_amounts_in_digits_of_another_script_are_a_400(world, client, admin, amount):
    """An amount is ASCII digits. Python's `\\d` and Decimal took any script's, so a 1, an
    Arabic-Indic zero (U+0660, which looks like a dot) and 00 passed review as 1.00 EUR and
    was stored and granted as 1000 EUR."""
    res = put_limit(client, world, admin, amount)
    assert res.status_code == 400, res.json
    assert res.json["errors"] == [{"field": FIELD, "detail": res.json["detail"]}]
    assert "must be a decimal number" in res.json["detail"]
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


@pytest.mark.parametrize("currency", ["EUD", "ABC", "HRK", "XXX", "XAU"])
def test_unknown_currency_codes_are_a_400(world, client, admin, currency):
    """A code ISO 4217 does not list as a currency (a typo, one withdrawn, gold, "no
    currency") is refused naming the currency, in a dry run, an apply and a role's default;
    any three capital letters were taken as a currency before."""
    field = FIELD.removesuffix("amount") + "currency"
    body = ('{"rules": [{"id": "buyers", "role": "buyer", "unit": "Engineering", "match": '
            '{"group": "Buyers"}, "parameters": {"spending_limit": {"amount": "10", '
            f'"currency": "{currency}"}}}}}}]}}')
    url = f"/api/v1/orgs/{world.org_id}"
    for res in (client.post(url + "/mapping:preview", data=body,
                            content_type="application/json", headers=admin),
                put_limit(client, world, admin, '"10"', currency)):
        assert res.status_code == 400, res.json
        assert res.json["errors"] == [{"field": field, "detail": res.json["detail"]}]
        assert f"{currency} is not a current ISO 4217 currency code" in res.json["detail"]
    res = client.post(url + "/roles", headers=admin, json={
        "key": "night_buyer", "name": "Night buyer", "permissions": ["orders.place"],
        "parameters": {"limit": {"type": "money",
                                 "default": {"amount": "10", "currency": currency}}}})
    assert res.status_code == 400, res.json
    assert res.json["errors"][0]["field"] == "parameters.limit.default.currency"
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0
    assert put_limit(client, world, admin, '"10"', "USD").status_code == 200


def test_three_place_currency_is_allowed_its_places(world, client, admin):
    """BHD has 3 minor units (ISO 4217): 1.125 BHD is a valid limit."""
    assert put_limit(client, world, admin, "1.125", "BHD").status_code == 200
    assert stored_limit(world) == {"amount": "1.125", "currency": "BHD"}


def test_role_default_amount_is_checked_the_same_way(world, client, admin):
    """A custom role's money default: 1e308 and -1 are refused naming the default's amount."""
    url = f"/api/v1/orgs/{world.org_id}/roles"
    for amount, detail in (("1e308", "less than"), ("-1", "must not be negative")):
        body = ('{"key": "night_buyer", "name": "Night buyer", "parameters": {"limit": '
                f'{{"type": "money", "default": {{"amount": {amount}, "currency": "EUR"}}}}}}}}')
        res = client.post(url, data=body, content_type="application/json", headers=admin)
        assert res.status_code == 400, res.json
        assert res.json["errors"][0]["field"] == "parameters.limit.default.amount"
        assert detail in res.json["detail"]
    body = ('{"key": "night_buyer", "name": "Night buyer", "parameters": {"limit": '
            '{"type": "money", "default": {"amount": 250.50, "currency": "EUR"}}}}')
    res = client.post(url, data=body, content_type="application/json", headers=admin)
    assert res.status_code == 201, res.json
    assert res.json["parameters"]["limit"]["default"] == {"amount": "250.50", "currency": "EUR"}


@pytest.mark.parametrize(("name", "text"), [
    ("rules.json", '{"rules": [{"id": "buyers", "role": "buyer", "unit": "Engineering", '
                   '"match": {"group": "Buyers"}, "parameters": {"spending_limit": '
                   '{"amount": 1234567.10, "currency": "EUR"}}}]}'),
    ("rules.toml", '[[rules]]\nid = "buyers"\nrole = "buyer"\nunit = "Engineering"\n'
                   'match = { group = "Buyers" }\n'
                   'parameters = { spending_limit = { amount = 1234567.10, currency = "EUR" } }\n'),
    ("rules.yaml", "rules:\n- id: buyers\n  role: buyer\n  unit: Engineering\n"
                   "  match: {group: Buyers}\n"
                   "  parameters: {spending_limit: {amount: 1234567.10, currency: EUR}}\n"),
])
def test_rule_files_read_amounts_exactly(world, tmp_path, name, text):
    """`roster mapping apply` reads JSON, TOML and YAML numbers as exact decimals."""
    path = tmp_path / name
    path.write_text(text)
    result = CliRunner().invoke(cli, ["mapping", "apply", str(path), "--org", "acme"],
                                env={"ROSTER_DATABASE__URL": world.db.url},
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert stored_limit(world) == {"amount": "1234567.10", "currency": "EUR"}


def _apply_yaml(world, tmp_path, amount: str):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n- id: buyers\n  role: buyer\n  unit: Engineering\n"
                    "  match: {group: Buyers}\n  parameters: {spending_limit: "
                    f"{{amount: {amount}, currency: EUR}}}}\n")
    return CliRunner().invoke(cli, ["mapping", "apply", str(path), "--org", "acme"],
                              env={"ROSTER_DATABASE__URL": world.db.url})


@pytest.mark.parametrize(("amount", "stored"), [("0750", "750"), ("-0", "0"), ("1_000", "1000"),
                                                ("0750.50", "750.50")])
def test_yaml_amounts_with_leading_zeros_are_decimal(world, tmp_path, amount, stored):
    """A YAML amount `0750` is 750 (YAML 1.2), as `0750.50` is 750.50; YAML 1.1's
    reading made it octal, a limit of 488 EUR."""
    result = _apply_yaml(world, tmp_path, amount)
    assert result.exit_code == 0, result.output
    assert stored_limit(world) == {"amount": stored, "currency": "EUR"}


@pytest.mark.parametrize("amount", ["1:30", "1:30.5"])
def test_yaml_sexagesimal_amounts_are_refused(world, tmp_path, amount):
    """`1:30` is no amount (YAML 1.1 read it as 90, `1:30.5` as the float 90.5): the apply
    fails naming the field, and nothing is stored."""
    result = _apply_yaml(world, tmp_path, amount)
    assert result.exit_code == 1, result.output
    assert f"{FIELD}: must be a decimal number" in result.output
    assert f"got '{amount}'" in result.output
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0
