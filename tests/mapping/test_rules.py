"""Table-driven tests of the pure mapping function (app/mapping/rules.py): no database."""

from __future__ import annotations

import pytest

from app.mapping.rules import (
    DesiredGrant,
    GroupFacts,
    Policy,
    RoleFacts,
    UnitIndex,
    UserFacts,
    resolve_grants,
)
from app.mapping.ruleset import parse_rule

EUR = {"amount": "1000.00", "currency": "EUR"}
ROLES = {
    "buyer": RoleFacts("buyer", {"spending_limit": {"type": "money", "default": EUR},
                                 "approval_threshold": {"type": "money", "default": EUR}}),
    "approver": RoleFacts("approver", {"approval_limit": {"type": "money", "default": EUR}}),
    "finance": RoleFacts("finance", {}),
    "quote_only": RoleFacts("quote_only", {}),
}
UNITS = UnitIndex.of({"Engineering": "u-eng", "Engineering/Tokyo": "u-tokyo",
                      "Departments": "u-deps", "Departments/Sales": "u-sales"})
ALICE = UserFacts(id="alice", department="Sales", cost_center="CC-10", division="EMEA",
                  organization="Acme KK", title="Senior Buyer", user_type="Employee",
                  locality="Tokyo", country="JP")
GROUPS = (GroupFacts("g1", "Tokyo Buyers", "00gTOKYO"), GroupFacts("g2", "Finance-EU", None))


def rule(match, *, id="r", priority=0, role="buyer", unit="Engineering", **extra):
    """A RuleSpec from its document form (the same parser files and the API use)."""
    raw = {"id": id, "priority": priority, "role": role, "match": match, **extra}
    if "unit_from" not in extra:
        raw["unit"] = unit
    return parse_rule(raw, "test")[0]


NO_POLICY = Policy()


def grants(rules, user=ALICE, groups=GROUPS, policy=NO_POLICY):
    """(role, unit path) pairs the rules give the user."""
    return [(g.role, g.unit_path) for g in resolve_grants(user, groups, rules, ROLES, UNITS,
                                                          policy)]


@pytest.mark.parametrize(("match", "expected"), [
    ({"group": "Tokyo Buyers"}, True),
    ({"group": "tokyo buyers"}, True),                       # displayName ignores case
    ({"group": "Osaka Buyers"}, False),
    ({"group": "Tokyo *", "match": "glob"}, True),
    ({"group": "Finance-??", "match": "glob"}, True),
    ({"group": "Finance-*-X", "match": "glob"}, False),
    ({"group": r"(Tokyo|Osaka) Buyers", "match": "regex"}, True),
    ({"group": r"Tokyo", "match": "regex"}, False),          # regex must match the whole name
    ({"group": "00gTOKYO", "by": "externalId"}, True),
    ({"group": "00gtokyo", "by": "externalId"}, False),      # externalId is caseExact
    ({"group": "g2", "by": "id"}, True),
    ({"group": "00g*", "by": "externalId", "match": "glob"}, True),
])
def test_group_patterns(match, expected):
    """Groups match by displayName, externalId or id; exactly, by glob or by regex."""
    assert bool(grants([rule(match)])) is expected


@pytest.mark.parametrize(("match", "expected"), [
    ({"attribute": "department", "value": "Sales"}, True),
    ({"attribute": "department", "value": "sales"}, True),
    ({"attribute": "department", "value": ["Marketing", "Sales"]}, True),
    ({"attribute": "costCenter", "value": "CC-1*", "match": "glob"}, True),
    ({"attribute": "division", "value": "APAC"}, False),
    ({"attribute": "organization", "value": "Acme KK"}, True),
    ({"attribute": "title", "value": ".*Buyer", "match": "regex"}, True),
    ({"attribute": "userType", "value": "Contractor"}, False),
    ({"attribute": "locality", "value": "Tokyo"}, True),
    ({"attribute": "country", "value": "JP"}, True),
    ({"attribute": "country", "present": True}, True),
    ({"attribute": "country", "present": False}, False),
])
def test_attributes(match, expected):
    """Enterprise attributes, title, userType and the work address are matchable."""
    assert bool(grants([rule(match)])) is expected


def test_missing_attribute_never_matches_a_value():
    """A user without a department matches no department value, but matches present=false."""
    bare = UserFacts(id="bob")
    assert grants([rule({"attribute": "department", "value": "*", "match": "glob"})],
                  user=bare) == []
    assert grants([rule({"attribute": "department", "present": False})], user=bare)


@pytest.mark.parametrize(("match", "expected"), [
    ({"all": [{"group": "Tokyo Buyers"}, {"attribute": "country", "value": "JP"}]}, True),
    ({"all": [{"group": "Tokyo Buyers"}, {"attribute": "country", "value": "DE"}]}, False),
    ({"any": [{"group": "Nope"}, {"attribute": "country", "value": "JP"}]}, True),
    ({"any": [{"group": "Nope"}, {"attribute": "country", "value": "DE"}]}, False),
    ({"not": {"group": "Nope"}}, True),
    ({"not": {"group": "Tokyo Buyers"}}, False),
    ({"all": [{"any": [{"group": "X"}, {"group": "Finance-EU"}]},
              {"not": {"attribute": "userType", "value": "Contractor"}}]}, True),
])
def test_combinations(match, expected):
    """all / any / not nest."""
    assert bool(grants([rule(match)])) is expected


def test_reason_names_matched_group_and_attribute():
    """The reason says which rule, group and attribute matched."""
    [grant] = resolve_grants(ALICE, GROUPS, [rule(
        {"all": [{"group": "Tokyo*", "match": "glob"}, {"attribute": "country", "value": "JP"}]},
        id="tokyo", priority=5)], ROLES, UNITS, Policy())
    assert grant.source == "rule:tokyo"
    assert grant.reason == {"rule": "tokyo", "priority": 5, "matched": [
        {"group": "Tokyo Buyers", "group_id": "g1", "by": "displayName", "pattern": "Tokyo*"},
        {"attribute": "country", "value": "JP"}]}


def test_higher_priority_decides_parameters():
    """Same role in the same unit from two rules: the higher priority's parameters win."""
    low = rule({"group": "Tokyo Buyers"}, id="low", priority=1,
               parameters={"spending_limit": {"amount": "100", "currency": "EUR"}})
    high = rule({"attribute": "country", "value": "JP"}, id="high", priority=9,
                parameters={"spending_limit": {"amount": "5000", "currency": "EUR"}})
    for order in ([low, high], [high, low]):
        [grant] = resolve_grants(ALICE, GROUPS, order, ROLES, UNITS, Policy())
        assert grant.rule_id == "high"
        assert grant.parameters["spending_limit"] == {"amount": "5000", "currency": "EUR"}
        assert grant.parameters["approval_threshold"] == EUR   # role default kept
        assert grant.reason["also_matched"] == ["low"]


def test_several_grants_in_different_units_and_roles():
    """A user may hold several grants; each (role, unit) once."""
    rules = [rule({"group": "Tokyo Buyers"}, id="a", unit="Engineering/Tokyo"),
             rule({"group": "Finance-EU"}, id="b", role="finance", unit="Engineering"),
             rule({"group": "Tokyo Buyers"}, id="c", unit="u-eng")]   # unit by id
    assert grants(rules) == [("buyer", "Engineering"), ("finance", "Engineering"),
                             ("buyer", "Engineering/Tokyo")]


@pytest.mark.parametrize(("user", "create", "expected"), [
    (ALICE, False, [("buyer", "Departments/Sales", "u-sales")]),
    (UserFacts(id="x", department="sales"), False, [("buyer", "Departments/Sales", "u-sales")]),
    (UserFacts(id="x", department="Legal"), False, []),
    (UserFacts(id="x", department="Legal"), True, [("buyer", "Departments/Legal", None)]),
    (UserFacts(id="x"), True, []),                                 # no department: no unit
    (UserFacts(id="x", department="A/B"), True, []),               # never a path injection
])
def test_derived_units(user, create, expected):
    """unit_from: the department value names a unit under Departments; missing -> rule's choice."""
    r = rule({"attribute": "department", "present": True},
             unit_from={"attribute": "department", "under": "Departments"}, create_unit=create)
    result = resolve_grants(user, (), [r], ROLES, UNITS, Policy())
    assert [(g.role, g.unit_path, g.unit_id) for g in result] == expected
    assert all(g.create_kind == "department" for g in result if g.unit_id is None)


def test_missing_static_unit_is_skipped_or_created():
    """A named unit that does not exist yields nothing, or a grant needing that unit."""
    assert grants([rule({"group": "Tokyo Buyers"}, unit="Engineering/Osaka")]) == []
    [g] = resolve_grants(ALICE, GROUPS, [rule({"group": "Tokyo Buyers"}, unit="Engineering/Osaka",
                                              create_unit=True)], ROLES, UNITS, Policy())
    assert (g.unit_path, g.unit_id) == ("Engineering/Osaka", None)


@pytest.mark.parametrize(("overrides", "expected"), [
    ({}, {"approval_limit": EUR}),
    ({"approval_limit": {"amount": "25000", "currency": "JPY"}},
     {"approval_limit": {"amount": "25000", "currency": "JPY"}}),
])
def test_parameter_overrides(overrides, expected):
    """Rule parameters override role defaults."""
    [g] = resolve_grants(ALICE, GROUPS, [rule({"group": "Tokyo Buyers"}, role="approver",
                                              parameters=overrides)], ROLES, UNITS, Policy())
    assert g.parameters == expected


@pytest.mark.parametrize(("policy", "rules", "expected"), [
    (Policy("quote_only", "Engineering"), [], [("quote_only", "Engineering")]),
    (Policy("quote_only", "u-tokyo"), [], [("quote_only", "Engineering/Tokyo")]),
    (Policy(), [], []),
    (Policy("quote_only", "Nowhere"), [], []),
    (Policy("quote_only", "Engineering"), [rule({"group": "Tokyo Buyers"}, role="finance")],
     [("finance", "Engineering")]),                               # a matching rule: no default
])
def test_default_policy(policy, rules, expected):
    """Users no rule matches get the policy's default role, or nothing."""
    assert grants(rules, policy=policy) == expected


def test_default_grant_source():
    """The default grant says it is the default."""
    [g] = resolve_grants(ALICE, (), [], ROLES, UNITS, Policy("quote_only", "Engineering"))
    assert isinstance(g, DesiredGrant)
    assert (g.source, g.rule_id) == ("default", None)


def test_inactive_users_get_nothing():
    """Suspended or deprovisioned users hold no grants, default included."""
    inactive = UserFacts(id="x", active=False, department="Sales")
    assert grants([rule({"attribute": "department", "value": "Sales"})], user=inactive,
                  policy=Policy("quote_only", "Engineering")) == []


def test_rule_for_unknown_role_is_ignored():
    """A rule naming a role the catalog lacks grants nothing (validation rejects it earlier)."""
    assert grants([rule({"group": "Tokyo Buyers"}, role="astronaut")]) == []


def test_the_group_a_grant_cites_does_not_depend_on_the_order_groups_are_loaded():
    """A glob two of the user's groups match cites one of them as the evidence (the
    access answer's `matched`, `roster user explain`, the grant's stored reason). It was
    whichever the database returned first, which no query orders: PostgreSQL's plan for one
    user (a SCIM write) and for a batch of 500 (a rule apply) can list them differently,
    and each flip rewrote the reason with a `grant:update` audit event when nothing had
    changed. The first in code-point order of the name (then the id) is cited."""
    buyers = (GroupFacts("g-z", "Buyers-Tokyo"), GroupFacts("g-a", "Buyers-Osaka"),
              GroupFacts("g-m", "Buyers-Kyoto"))
    rules = [rule({"group": "Buyers-*", "match": "glob"})]
    reasons = [resolve_grants(ALICE, order, rules, ROLES, UNITS, NO_POLICY)[0].reason
               for order in (buyers, buyers[::-1], buyers[1:] + buyers[:1])]
    assert [r["matched"][0]["group"] for r in reasons] == ["Buyers-Kyoto"] * 3
    assert reasons[0] == reasons[1] == reasons[2]
