"""Rule documents: parse and validate a rule set (TOML, YAML or JSON) into rules.py values.

The same document shape is read from files (`roster mapping apply`, app/mapping/rulefile.py),
from API bodies, and rebuilt from the stored rows, so one parser validates all three.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, time
from decimal import Decimal
from typing import Any

from app.errors import InvalidInput
from app.folding import fold_text
from app.mapping.money import shown
from app.mapping.regex import RULESET_INSTRUCTIONS, PatternError
from app.mapping.regex import check as check_regex
from app.mapping.rules import (
    ATTRIBUTES,
    GROUP_FIELDS,
    MATCH_KINDS,
    ON_LOSS,
    AllOf,
    AnyOf,
    AttributeMatch,
    Condition,
    GroupMatch,
    Not,
    Policy,
    RuleSpec,
    UnitTarget,
    regex_patterns,
)
from app.visible_names import name_problem

RULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}\Z")
UNIT_KINDS = ("department", "cost_center", "team", "location")
MAX_DEPTH = 8
MAX_RULES = 1000
MAX_VALUES = 100  # values (patterns) of one condition
# Conditions of a rule set (each group, attribute, all, any and not): every SCIM write and
# login evaluates them all for each user it touches, against each of the user's groups.
MAX_CONDITIONS = 10_000
MAX_TEXT = 500  # patterns and names
MAX_PRIORITY = 1_000_000  # stored in a 32-bit column
RULE_KEYS = frozenset({"id", "priority", "description", "match", "role", "unit", "unit_from",
                       "create_unit", "unit_kind", "parameters"})


@dataclass(frozen=True)
class RuleSet:
    """A parsed rule document: the policy, the rules, and each rule's description."""

    policy: Policy
    rules: tuple[RuleSpec, ...]
    descriptions: Mapping[str, str]


def _fail(where: str, detail: str) -> InvalidInput:
    return InvalidInput(f"{where}: {detail}", field=where)


def _text(raw: Any, where: str) -> str:
    if isinstance(raw, bool | int | float | Decimal | date | time):
        # A cost center 4711, a country NO (YAML 1.1's false), a date: the file's reader
        # made it no string. Say what was read, and how to write it.
        raise _fail(where, f"must be a non-empty string, got {shown(raw)} (read as "
                           f"{type(raw).__name__}): quote the value, e.g. \"4711\" or \"NO\"")
    if not isinstance(raw, str) or not raw.strip():
        raise _fail(where, "must be a non-empty string")
    if len(raw) > MAX_TEXT:
        raise _fail(where, f"must be at most {MAX_TEXT} characters")
    return raw


def _kind(raw: Mapping[str, Any], where: str) -> str:
    kind = raw.get("match", "exact")
    if kind not in MATCH_KINDS:
        raise _fail(f"{where}.match", f"must be one of {', '.join(MATCH_KINDS)}")
    return str(kind)


def _pattern(kind: str, value: str, where: str, problems: list[str] | None) -> str:
    """A pattern; a regex must run on RE2 (app/mapping/regex.py) with Python's meaning.

    ``problems`` is None for a document being saved (refused: 400 naming ``where``) and a
    list for a stored one, which gathers the reason so the rule is disabled, not a 500.
    """
    if kind != "regex" and value != value.strip() and problems is None:
        # SCIM keeps a displayName or attribute as sent, surrounding white space too: a
        # pattern "Buyers " matched no group "Buyers", silently. A regex says it explicitly.
        raise _fail(where, "starts or ends with white space, so it matches no name without "
                           "it (SCIM keeps names as sent): remove it, or to match it write "
                           "a glob such as \"Buyers[ ]\"")
    if kind == "regex":
        try:
            check_regex(value)
        except PatternError as exc:
            if problems is None:
                raise _fail(where, str(exc)) from None
            problems.append(f"{where}: {exc}")
    return value


def _only(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    """Refuse a key this table does not take, naming it (``rules[0].match.mach``), as the
    API's own schemas name an unknown field: a typo silently ignored matched something else."""
    extra = sorted(str(key) for key in set(raw) - allowed)
    if extra:
        more = f" (also {', '.join(extra[1:])})" if extra[1:] else ""
        raise _fail(f"{where}.{extra[0]}" if where else extra[0],
                    f"unknown key{more}; this table takes {', '.join(sorted(allowed))}")


CONDITION_KINDS = ("group", "attribute", "all", "any", "not")


def parse_condition(raw: Any, where: str = "match", depth: int = 0,
                    problems: list[str] | None = None,
                    budget: list[int] | None = None) -> Condition:
    """A condition tree from its document form ({group}, {attribute}, {all}, {any}, {not}).

    ``problems``: a stored document's (see :func:`_pattern`); None when it is being saved.
    ``budget``: the conditions the rule set may still hold (``MAX_CONDITIONS``), counted
    down as they are read, so a huge list is refused where it crosses the limit.
    """
    if depth > MAX_DEPTH:
        raise _fail(where, f"conditions nest deeper than {MAX_DEPTH}")
    if budget is not None:
        budget[0] -= 1
        if budget[0] < 0:
            raise _fail(where, f"a rule set holds at most {MAX_CONDITIONS:,} conditions (each "
                               "group, attribute, all, any and not): match many groups with "
                               "one glob or regex")
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a table with one of group, attribute, all, any, not")
    kinds = [name for name in CONDITION_KINDS if name in raw]
    if len(kinds) > 1:
        # {group, attribute} read as the group alone; nest them: {all = [{...}, {...}]}.
        raise _fail(f"{where}.{kinds[1]}", f"a condition is one of group, attribute, all, "
                                            f"any, not; this one has {' and '.join(kinds)} "
                                            "(combine conditions with all or any)")
    if "group" in raw:
        _only(raw, {"group", "by", "match"}, where)
        by = raw.get("by", "displayName")
        if by not in GROUP_FIELDS:
            raise _fail(f"{where}.by", f"must be one of {', '.join(GROUP_FIELDS)}")
        kind = _kind(raw, where)
        value = _pattern(kind, _text(raw["group"], f"{where}.group"), f"{where}.group",
                         problems)
        return GroupMatch(value, by, kind)
    if "attribute" in raw:
        return _attribute(raw, where, problems)
    for name, cls in (("all", AllOf), ("any", AnyOf)):
        if name in raw:
            _only(raw, {name}, where)
            subs = raw[name]
            if not isinstance(subs, list) or not subs:
                raise _fail(f"{where}.{name}", "must be a non-empty list of conditions")
            return cls(tuple(parse_condition(s, f"{where}.{name}[{i}]", depth + 1, problems,
                                             budget) for i, s in enumerate(subs)))
    if "not" in raw:
        _only(raw, {"not"}, where)
        return Not(parse_condition(raw["not"], f"{where}.not", depth + 1, problems, budget))
    raise _fail(where, "must contain one of group, attribute, all, any, not")


def _attribute(raw: Mapping[str, Any], where: str,
               problems: list[str] | None) -> AttributeMatch:
    _only(raw, {"attribute", "value", "match", "present"}, where)
    name = raw["attribute"]
    if name not in ATTRIBUTES:
        raise _fail(f"{where}.attribute", f"{name!r} is not one of {', '.join(ATTRIBUTES)}")
    if "present" in raw:
        if not isinstance(raw["present"], bool) or "value" in raw:
            raise _fail(f"{where}.present", "must be true or false, without a value")
        if "match" in raw and problems is None:
            # present tests whether there is a value at all: a match kind was ignored.
            raise _fail(f"{where}.match", "not with present (present = true matches any "
                                          "value; match goes with value)")
        return AttributeMatch(name, present=raw["present"])
    values = raw.get("value")
    kind = _kind(raw, where)
    if not isinstance(values, list):
        return AttributeMatch(name, (_pattern(kind, _text(values, f"{where}.value"),
                                              f"{where}.value", problems),), kind)
    if not values and problems is None:
        # An empty list matched no one, and under `not` every one: never what was meant.
        raise _fail(f"{where}.value", "must be a string or a non-empty list of strings")
    if len(values) > MAX_VALUES and problems is None:
        # Each regex is compiled and kept by every worker: the list is bounded like the rules.
        raise _fail(f"{where}.value", f"must list at most {MAX_VALUES} values")
    return AttributeMatch(name, tuple(
        _pattern(kind, _text(v, f"{where}.value[{i}]"), f"{where}.value[{i}]", problems)
        for i, v in enumerate(values)), kind)


def _path(raw: Any, where: str) -> str:
    """A unit path (or id) as units are named: each part trimmed, as ``add_unit`` trims a
    name. ``Locations/Osaka `` was kept as sent, never matched the unit made for it, and
    every later evaluation tried to make that unit again (409 on the IdP's writes)."""
    parts = [part.strip() for part in _text(raw, where).strip().strip("/").split("/")]
    if not all(parts):
        raise _fail(where, "each part of a unit path must be non-empty (no '//' or blank part)")
    for part in parts:
        if (problem := name_problem(part)) is not None:
            raise _fail(where, f"each part of a unit path must {problem}")
    return "/".join(parts)


def _unit(raw: Mapping[str, Any], where: str) -> UnitTarget:
    create = raw.get("create_unit", False)
    kind = raw.get("unit_kind", "department")
    if not isinstance(create, bool):
        raise _fail(f"{where}.create_unit", "must be true or false")
    if kind not in UNIT_KINDS:
        raise _fail(f"{where}.unit_kind", f"must be one of {', '.join(UNIT_KINDS)}")
    if ("unit" in raw) == ("unit_from" in raw):
        raise _fail(where, "needs exactly one of unit (a path or id) or unit_from")
    if "unit" in raw:
        return UnitTarget(ref=_path(raw["unit"], f"{where}.unit"), create=create, kind=kind)
    derived = raw["unit_from"]
    if not isinstance(derived, Mapping):
        raise _fail(f"{where}.unit_from", "must be a table {attribute, under}")
    _only(derived, {"attribute", "under"}, f"{where}.unit_from")
    if derived.get("attribute") not in ATTRIBUTES:
        raise _fail(f"{where}.unit_from.attribute", f"must be one of {', '.join(ATTRIBUTES)}")
    under = derived.get("under")
    under = _path(under, f"{where}.unit_from.under") if under is not None else None
    return UnitTarget(from_attribute=derived["attribute"], under=under, create=create, kind=kind)


def parse_rule(raw: Any, where: str, *, stored: bool = False,
               budget: list[int] | None = None) -> tuple[RuleSpec, str]:
    """One rule and its description from its document form.

    ``stored``: read back from the database, where it was valid when saved. A regex RE2
    cannot run (saved before RE2) then disables the rule instead of failing the request
    that evaluates it; the rule matches no one and says why in ``disabled``. ``budget``:
    see :func:`parse_condition`.
    """
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a table")
    _only(raw, set(RULE_KEYS), where)
    rule_id = raw.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise _fail(f"{where}.id", "must be 1-64 letters, digits or _.:- (a stable rule name)")
    priority = raw.get("priority", 0)
    if not isinstance(priority, int) or isinstance(priority, bool) \
            or abs(priority) > MAX_PRIORITY:
        raise _fail(f"{where}.priority", f"must be an integer within ±{MAX_PRIORITY}")
    parameters = raw.get("parameters", {})
    if not isinstance(parameters, Mapping):
        raise _fail(f"{where}.parameters", "must be a table")
    description = raw.get("description", "")
    if not isinstance(description, str) or len(description) > 1000:
        raise _fail(f"{where}.description", "must be a string of at most 1000 characters")
    problems: list[str] | None = [] if stored else None
    spec = RuleSpec(id=rule_id, priority=priority,
                    condition=parse_condition(raw.get("match"), f"{where}.match", 0, problems,
                                              budget),
                    role=_text(raw.get("role"), f"{where}.role"), unit=_unit(raw, where),
                    parameters=dict(parameters), disabled="; ".join(problems or ()) or None)
    return spec, description


def parse_policy(raw: Any, where: str = "policy", *, stored: bool = False) -> Policy:
    """The organization policy from its document form.

    A ``default_role`` or ``default_unit`` that is given must name something: ``""`` was
    read as "no default" while the other half stayed. ``stored``: read back from the
    database, where an older release may have kept such a value (it still means none).
    """
    raw = raw or {}
    if not isinstance(raw, Mapping):
        raise _fail(where, "must be a table")
    _only(raw, {"default_role", "default_unit", "on_loss"}, where)
    on_loss = raw.get("on_loss", "nothing")
    if on_loss not in ON_LOSS:
        raise _fail(f"{where}.on_loss", f"must be one of {', '.join(ON_LOSS)}")
    role, unit = raw.get("default_role"), raw.get("default_unit")
    if not stored:
        for name, value in (("default_role", role), ("default_unit", unit)):
            if value is not None:
                _text(value, f"{where}.{name}")
    if (role is None) != (unit is None):
        raise _fail(where, "default_role and default_unit go together (or neither)")
    return Policy(default_role=_text(role, f"{where}.default_role") if role else None,
                  default_unit=_path(unit, f"{where}.default_unit") if unit else None,
                  on_loss=on_loss)


def parse_document(data: Any) -> RuleSet:
    """A whole rule set ({policy, rules}) from a parsed file or request body."""
    if not isinstance(data, Mapping):
        raise _fail("document", "must be a table with policy and rules")
    _only(data, {"policy", "rules"}, "")
    raw_rules = data.get("rules", [])
    if not isinstance(raw_rules, list) or len(raw_rules) > MAX_RULES:
        raise _fail("rules", f"must be a list of at most {MAX_RULES} rules")
    rules, descriptions, budget = [], {}, [MAX_CONDITIONS]
    folded: dict[str, str] = {}
    for i, raw in enumerate(raw_rules):
        spec, description = parse_rule(raw, f"rules[{i}]", budget=budget)
        if spec.id in descriptions:
            raise _fail(f"rules[{i}].id", f"duplicate rule id {spec.id!r}")
        if (same := folded.setdefault(fold_text(spec.id), spec.id)) != spec.id:
            # `buyers` and `Buyers`: one name to whoever reads the rules (a unit path is one
            # in any case too). Stored sets that hold both still load (rules_of).
            raise _fail(f"rules[{i}].id", f"rule id {spec.id!r} is {same!r} in another case; "
                                          "rule ids are one name in any case")
        rules.append(spec)
        descriptions[spec.id] = description
    size = sum(check_regex(p) for p in set().union(*(regex_patterns(r.condition) for r in rules)))
    if size > RULESET_INSTRUCTIONS:  # each worker keeps them compiled (app/mapping/regex.py)
        raise _fail("rules", f"the regular expressions need {size:,} RE2 instructions together, "
                             f"more than the {RULESET_INSTRUCTIONS:,} of a rule set: use fewer or "
                             "narrower ones (\\w, \\d and (?i) stand for thousands of characters)")
    return RuleSet(parse_policy(data.get("policy")), tuple(rules), descriptions)


def rule_document(rule: RuleSpec, description: str = "") -> dict[str, Any]:
    """The document form of a rule (what parse_rule reads back)."""
    doc: dict[str, Any] = {"id": rule.id, "priority": rule.priority, "role": rule.role,
                           "match": condition_document(rule.condition)}
    if description:
        doc["description"] = description
    if rule.unit.from_attribute:
        doc["unit_from"] = {"attribute": rule.unit.from_attribute}
        if rule.unit.under:
            doc["unit_from"]["under"] = rule.unit.under
    else:
        doc["unit"] = rule.unit.ref
    doc["create_unit"] = rule.unit.create
    doc["unit_kind"] = rule.unit.kind
    if rule.parameters:
        doc["parameters"] = dict(rule.parameters)
    return doc


def condition_document(cond: Condition) -> dict[str, Any]:
    """The document form of a condition."""
    if isinstance(cond, GroupMatch):
        return {"group": cond.value, "by": cond.by, "match": cond.kind}
    if isinstance(cond, AttributeMatch):
        if cond.present is not None:
            return {"attribute": cond.attribute, "present": cond.present}
        value: str | list[str] = cond.values[0] if len(cond.values) == 1 else list(cond.values)
        return {"attribute": cond.attribute, "value": value, "match": cond.kind}
    if isinstance(cond, AllOf | AnyOf):
        name = "all" if isinstance(cond, AllOf) else "any"
        return {name: [condition_document(c) for c in cond.conditions]}
    return {"not": condition_document(cond.condition)}


def policy_document(policy: Policy) -> dict[str, Any]:
    """The document form of a policy."""
    doc: dict[str, Any] = {"on_loss": policy.on_loss}
    if policy.default_role:
        doc.update(default_role=policy.default_role, default_unit=policy.default_unit)
    return doc


def document(ruleset: RuleSet) -> dict[str, Any]:
    """The whole document form of a rule set."""
    return {"policy": policy_document(ruleset.policy),
            "rules": [rule_document(r, ruleset.descriptions.get(r.id, ""))
                      for r in ruleset.rules]}


def rules_of(documents: Sequence[Mapping[str, Any]]) -> tuple[RuleSpec, ...]:
    """Parse stored rule documents (validated when stored; see ``stored`` of parse_rule)."""
    return tuple(parse_rule(d, f"rule {d.get('id')}", stored=True)[0] for d in documents)
