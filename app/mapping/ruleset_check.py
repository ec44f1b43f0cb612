"""A parsed rule set checked against an organization: its roles, parameters and units.

Split from app/mapping/ruleset.py, which reads documents without knowing the organization.
"""

from __future__ import annotations

from collections.abc import Mapping

from app.errors import InvalidInput
from app.mapping.catalog import check_value
from app.mapping.money import mixed_currencies
from app.mapping.rules import RoleFacts, RuleSpec, UnitIndex, UnitTarget, effective_parameters
from app.mapping.ruleset import RuleSet


def fail(where: str, detail: str) -> InvalidInput:
    """A 400 naming the field, as app/mapping/ruleset.py words them."""
    return InvalidInput(f"{where}: {detail}", field=where)


def check_against(ruleset: RuleSet, roles: Mapping[str, RoleFacts],
                  units: UnitIndex) -> RuleSet:
    """Check roles, parameter types and named units exist; returns canonical parameters."""
    checked = []
    for i, rule in enumerate(ruleset.rules):
        where = f"rules[{i}] ({rule.id})"
        role = roles.get(rule.role)
        if role is None:
            raise fail(f"{where}.role", f"unknown role {rule.role!r} in this organization")
        params = {}
        for name, value in rule.parameters.items():
            decl = role.parameters.get(name)
            if decl is None:
                raise fail(f"{where}.parameters", f"role {role.key} has no parameter {name!r}")
            params[name] = check_value(decl["type"], value, f"{where}.parameters.{name}")
        _check_currencies(role, params, f"{where}.parameters")
        checked.append(RuleSpec(rule.id, rule.priority, rule.condition, rule.role,
                                _check_unit(rule.unit, units, where), params, rule.disabled))
    policy = ruleset.policy
    if policy.default_role and policy.default_role not in roles:
        raise fail("policy.default_role", f"unknown role {policy.default_role!r}")
    if policy.default_unit and units.find(policy.default_unit) is None:
        raise fail("policy.default_unit", f"unit {policy.default_unit!r} does not exist")
    return RuleSet(policy, tuple(checked), ruleset.descriptions)


def _check_currencies(role: RoleFacts, params: Mapping[str, object], where: str) -> None:
    """The grant's money parameters (the rule's, else the role's defaults) in one currency."""
    granted = effective_parameters(role, params)
    money = {name: value for name, value in granted.items()
             if role.parameters[name].get("type") == "money"}
    mixed = mixed_currencies(money, defaults=set(money) - set(params))
    if mixed:
        raise fail(where, f"one grant's amounts must be in one currency, got {mixed}: give "
                          "them all in one currency")


def _check_unit(target: UnitTarget, units: UnitIndex, where: str) -> UnitTarget:
    """A named unit must exist unless the rule may create it; ``under`` becomes a path."""
    named = target.ref or target.under
    found = units.find(named) if named else None
    if named and found is None and not target.create:
        raise fail(f"{where}.{'unit' if target.ref else 'unit_from.under'}",
                    f"unit {named!r} does not exist (set create_unit)")
    if target.under and found is not None:
        return UnitTarget(None, target.from_attribute, found[1], target.create, target.kind)
    return target
