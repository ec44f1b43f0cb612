"""Mapping rules as a pure function: user facts, groups, rules and roles in; desired grants out.

No database and no web framework here (tests/test_architecture.py checks it): evaluation.py
loads the facts and applies the result, preview.py compares it, tests drive it from tables.
"""

from __future__ import annotations

import fnmatch
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.folding import fold_text
from app.mapping.regex import fullmatcher
from app.visible_names import name_problem

# Rule attribute name -> UserFacts field (SCIM core and enterprise names, RFC 7643 §4.1, §4.3).
ATTRIBUTES: dict[str, str] = {
    "department": "department", "costCenter": "cost_center", "division": "division",
    "organization": "organization", "title": "title", "userType": "user_type",
    "locality": "locality", "country": "country",
}
GROUP_FIELDS = ("displayName", "externalId", "id")
MATCH_KINDS = ("exact", "glob", "regex")
ON_LOSS = ("suspend", "deprovision", "nothing")
# externalId and id are caseExact (RFC 7643 §4.2, §3.1); names and attributes are not.
_CASE_EXACT = frozenset({"externalId", "id"})
_GROUP_ATTRS = {"displayName": "display_name", "externalId": "external_id", "id": "id"}


@dataclass(frozen=True)
class UserFacts:
    """What rules may look at for one user (work address already picked by the loader)."""

    id: str
    active: bool = True
    department: str | None = None
    cost_center: str | None = None
    division: str | None = None
    organization: str | None = None
    title: str | None = None
    user_type: str | None = None
    locality: str | None = None
    country: str | None = None


@dataclass(frozen=True)
class GroupFacts:
    """One group the user is a member of."""

    id: str
    display_name: str
    external_id: str | None = None


@dataclass(frozen=True)
class RoleFacts:
    """A role of the catalog: its key and declared parameters (type and default)."""

    key: str
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


UNIT_NAME_MAX = 200  # units.name's length (app/models/organization.py)
UNIT_PATH_MAX = 1000  # units.path's


@dataclass(frozen=True)
class UnitIndex:
    """The organization's units by path and by id."""

    by_path: Mapping[str, str] = field(default_factory=dict)
    by_id: Mapping[str, str] = field(default_factory=dict)
    by_folded: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, by_path: Mapping[str, str]) -> UnitIndex:
        """An index of ``{path: id}``."""
        folded: dict[str, str] = {}
        for path in sorted(by_path):
            folded.setdefault(fold_text(path), path)
        return cls(dict(by_path), {unit_id: path for path, unit_id in by_path.items()}, folded)

    def find(self, ref: str) -> tuple[str, str] | None:
        """(id, path) of the unit named by path or id, or None; paths ignore case if need be,
        folded as the database folds them (app/folding.py): one unit there is one here."""
        if ref in self.by_path:
            return self.by_path[ref], ref
        if ref in self.by_id:
            return ref, self.by_id[ref]
        return self.find_path(ref)

    def find_path(self, path: str) -> tuple[str, str] | None:
        """(id, path) of the unit at ``path`` (in any case), never one whose id it spells:
        for paths built from an IdP's values, which may hold anything."""
        if path in self.by_path:
            return self.by_path[path], path
        # IdP values rarely match the unit tree's capitalisation ("sales" vs "Sales").
        found = self.by_folded.get(fold_text(path))
        return (self.by_path[found], found) if found is not None else None


@dataclass(frozen=True)
class Policy:
    """Organization policy: the default grant for users no rule matches, and leaver handling."""

    default_role: str | None = None
    default_unit: str | None = None
    on_loss: str = "nothing"


# Conditions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupMatch:
    """Member of a group whose displayName / externalId / id matches ``value``."""

    value: str
    by: str = "displayName"
    kind: str = "exact"


@dataclass(frozen=True)
class AttributeMatch:
    """A user attribute equals one of ``values`` (or matches a glob / regex, or is present)."""

    attribute: str
    values: tuple[str, ...] = ()
    kind: str = "exact"
    present: bool | None = None


@dataclass(frozen=True)
class AllOf:
    """Every sub-condition matches."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one sub-condition matches."""

    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    """The sub-condition does not match."""

    condition: Condition


Condition = GroupMatch | AttributeMatch | AllOf | AnyOf | Not


def regex_patterns(condition: Condition) -> set[str]:
    """The regular expressions a condition matches with (each once)."""
    if isinstance(condition, AllOf | AnyOf):
        return set().union(*(regex_patterns(c) for c in condition.conditions))
    if isinstance(condition, Not):
        return regex_patterns(condition.condition)
    if condition.kind != "regex":
        return set()
    return {condition.value} if isinstance(condition, GroupMatch) else set(condition.values)


@dataclass(frozen=True)
class UnitTarget:
    """Where a rule grants: a unit path or id, or the unit named by an attribute under a parent."""

    ref: str | None = None
    from_attribute: str | None = None
    under: str | None = None
    create: bool = False
    kind: str = "department"


@dataclass(frozen=True)
class RuleSpec:
    """One mapping rule: if ``condition`` matches, grant ``role`` in ``unit``."""

    id: str
    priority: int
    condition: Condition
    role: str
    unit: UnitTarget
    parameters: Mapping[str, Any] = field(default_factory=dict)
    # Why a stored rule is off (a regex RE2 cannot run): it matches no one, never half.
    disabled: str | None = None


@dataclass(frozen=True)
class DesiredGrant:
    """A grant the rules say the user should hold. ``unit_id`` None: the unit must be created."""

    role: str
    unit_path: str
    unit_id: str | None
    parameters: Mapping[str, Any]
    source: str
    rule_id: str | None
    reason: dict[str, Any]
    create_kind: str | None = None
    # This grant's unit is made by this user's change (the first in a run to need it).
    creates_unit: bool = False


# A run's planner of new units (app/mapping/unit_plan.py): given a missing path and the rule
# asking, (the path as the unit will be made, whether this request makes it), or None when
# no unit may be made (past ``[mapping] max_units``): the rule then gives the user nothing.
UnitPlanner = Callable[[str, str], tuple[str, bool] | None]


@functools.lru_cache(maxsize=4096)
def _matcher(kind: str, pattern: str, case_exact: bool) -> Callable[[str], bool]:
    """A compiled test for one pattern (rules are evaluated for thousands of users).

    Regexes are matched whole, case-sensitively unless they say ``(?i)``, by RE2 in linear
    time (app/mapping/regex.py); glob and exact ignore case unless ``case_exact``, folded
    as Roster folds names (app/folding.py, RFC 7643 §2.2 caseExact=false): a rule names
    the groups SCIM takes for that name. ``str.casefold`` joined ``Straße`` and ``STRASSE``
    (two groups to SCIM) and kept ``İSTANBUL`` from ``istanbul`` (one name to SCIM).
    """
    if kind == "regex":
        # Looked up per value, not kept here: app/mapping/regex.py bounds what the
        # compiled programs may weigh, and a reference held here would defeat it.
        return lambda value: fullmatcher(pattern)(value)
    fold: Callable[[str], str] = (lambda v: v) if case_exact else fold_text
    if kind == "glob":
        glob = re.compile(fnmatch.translate(fold(pattern)))
        return lambda value: glob.match(fold(value)) is not None
    wanted = fold(pattern)
    return lambda value: fold(value) == wanted


def _text_matches(kind: str, pattern: str, value: str | None, case_exact: bool) -> bool:
    return value is not None and _matcher(kind, pattern, case_exact)(value)


def attribute_value(user: UserFacts, attribute: str) -> str | None:
    """The value of a rule attribute name (``costCenter`` ...) for this user."""
    value = getattr(user, ATTRIBUTES[attribute])
    return value if value not in ("", None) else None


def _group_value(group: GroupFacts, by: str) -> str | None:
    return getattr(group, _GROUP_ATTRS[by])


def match(condition: Condition, user: UserFacts,
          groups: Sequence[GroupFacts]) -> list[dict[str, Any]] | None:
    """The evidence (matched groups and attributes) if the condition holds, else None."""
    if isinstance(condition, GroupMatch):
        for group in groups:
            if _text_matches(condition.kind, condition.value, _group_value(group, condition.by),
                             condition.by in _CASE_EXACT):
                return [{"group": group.display_name, "group_id": group.id,
                         "by": condition.by, "pattern": condition.value}]
        return None
    if isinstance(condition, AttributeMatch):
        value = attribute_value(user, condition.attribute)
        if condition.present is not None:
            ok = (value is not None) == condition.present
        else:
            ok = any(_text_matches(condition.kind, v, value, False) for v in condition.values)
        return [{"attribute": condition.attribute, "value": value}] if ok else None
    if isinstance(condition, AllOf):
        evidence: list[dict[str, Any]] = []
        for sub in condition.conditions:
            found = match(sub, user, groups)
            if found is None:
                return None
            evidence.extend(found)
        return evidence
    if isinstance(condition, AnyOf):
        for sub in condition.conditions:
            found = match(sub, user, groups)
            if found is not None:
                return found
        return None
    return [] if match(condition.condition, user, groups) is None else None


def _target(rule: RuleSpec, user: UserFacts, units: UnitIndex,
            plan: UnitPlanner | None) -> tuple[str, str | None, bool] | None:
    """(path, id, creates) of the rule's unit for this user; id None when it is to be made
    (``creates``: by this user's change, not an earlier one of the same run)."""
    target = rule.unit
    if target.from_attribute:
        value = attribute_value(user, target.from_attribute)
        # A value holding '/', only white space, or longer than a unit name may be names
        # no unit: the rule skips the user (the IdP's request still succeeds).
        name = value.strip() if value is not None else ""
        if not name or "/" in name or len(name) > UNIT_NAME_MAX:
            return None
        ref = f"{target.under}/{name}" if target.under else name
        if len(ref) > UNIT_PATH_MAX:
            return None
        # A path, never an id: a department spelling another unit's id named that unit.
        found = units.find_path(ref)
        # Nor is a unit made of a name with a control character or no visible one
        # (app/visible_names.py, as for a unit added by hand); one that exists already
        # (made before the rule) still grants, so no user loses a grant over it.
        if found is None and name_problem(name) is not None:
            return None
    else:
        ref = target.ref or ""
        found = units.find(ref)
    if found is not None:
        return found[1], found[0], False
    if not (target.create and ref):
        return None
    planned = plan(ref, rule.id) if plan is not None else (ref, True)
    return None if planned is None else (planned[0], None, planned[1])


def effective_parameters(role: RoleFacts, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Role defaults, overridden by the deciding rule's values for declared parameters."""
    params = {name: decl.get("default") for name, decl in role.parameters.items()}
    params.update({k: v for k, v in overrides.items() if k in role.parameters})
    return params


def resolve_grants(user: UserFacts, groups: Sequence[GroupFacts], rules: Sequence[RuleSpec],
                   roles: Mapping[str, RoleFacts], units: UnitIndex,
                   policy: Policy, plan: UnitPlanner | None = None) -> list[DesiredGrant]:
    """The grants the rules give this user; the highest priority rule decides each (role, unit).

    ``plan`` settles units rules would create (one per path in any case, a bound on how
    many); without it every missing unit a ``create_unit`` rule names is to be made."""
    if not user.active:
        return []
    # A group condition cites the first group it matches: in code-point order of the name
    # (then id), not in the database's row order, which differs from plan to plan and would
    # rewrite an unchanged grant's reason (a grant:update audit event) when it flipped.
    groups = sorted(groups, key=lambda g: (g.display_name, g.id))
    decided: dict[tuple[str, str], DesiredGrant] = {}
    for rule in sorted(rules, key=lambda r: (-r.priority, r.id)):
        role = roles.get(rule.role)
        if role is None or rule.disabled:
            continue
        evidence = match(rule.condition, user, groups)
        if evidence is None:
            continue
        target = _target(rule, user, units, plan)
        if target is None:
            continue
        path, unit_id, creates = target
        # Paths name units ignoring case (UnitIndex.find): two rules naming one new unit in
        # two cases are one grant, not two rows for the same (user, unit, role).
        key = (rule.role, fold_text(path))
        if key in decided:
            also = decided[key].reason.get("also_matched", [])
            decided[key].reason["also_matched"] = [*also, rule.id]
            continue
        decided[key] = DesiredGrant(
            role=rule.role, unit_path=path, unit_id=unit_id,
            parameters=effective_parameters(role, rule.parameters),
            source=f"rule:{rule.id}", rule_id=rule.id,
            reason={"rule": rule.id, "priority": rule.priority, "matched": evidence},
            create_kind=rule.unit.kind if unit_id is None else None, creates_unit=creates,
        )
    if not decided:
        return _default_grant(roles, units, policy)
    return sorted(decided.values(), key=lambda g: (g.unit_path, g.role))


def _default_grant(roles: Mapping[str, RoleFacts], units: UnitIndex,
                   policy: Policy) -> list[DesiredGrant]:
    role = roles.get(policy.default_role or "")
    found = units.find(policy.default_unit or "")
    if role is None or found is None:
        return []
    return [DesiredGrant(role=role.key, unit_path=found[1], unit_id=found[0],
                         parameters=effective_parameters(role, {}), source="default",
                         rule_id=None, reason={"default": True})]
