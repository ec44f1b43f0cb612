"""Mapping rules of an organization: read, replace, edit one rule, and preview (dry run)."""

from __future__ import annotations

import re
from typing import Any

from flask import current_app
from marshmallow import Schema, fields

from app.api.frame import ApiContext, api_route
from app.api.schemas import StrictSchema
from app.api.views import bp
from app.errors import Conflict, InvalidInput, NotFound
from app.folding import fold_text
from app.mapping.locks import own_mapping
from app.mapping.preview import Preview, apply_ruleset, preview
from app.mapping.ruleset import RuleSet, document, parse_document, parse_rule
from app.mapping.storage import latest_revision, load_ruleset
from app.models import Organization

_RULE_DOC = ("A rule: {id, priority, role, match, unit | unit_from, create_unit, unit_kind, "
             "parameters, description}; see config/mapping.example.toml.")


class RuleSetBodySchema(StrictSchema):
    """A whole rule set: the policy and the rules (the rule file's document, as JSON)."""

    policy = fields.Dict(load_default=dict, metadata={
        "description": "{default_role, default_unit, on_loss: suspend|deprovision|nothing}"})
    rules = fields.List(fields.Dict(), load_default=list, metadata={"description": _RULE_DOC})


class RuleBodySchema(StrictSchema):
    """One rule, wrapped so unknown top-level keys are refused by name."""

    rule = fields.Dict(required=True, metadata={"description": _RULE_DOC})


class ForceArgs(StrictSchema):
    """Apply even when more than [mapping] max_loss_share of the users lose every grant."""

    force = fields.Boolean(load_default=False)


class RuleSetSchema(Schema):
    """The stored rule set and the revision that last changed it."""

    policy = fields.Dict(required=True)
    rules = fields.List(fields.Dict(), required=True)
    revision = fields.Integer(allow_none=True, required=True)
    disabled_rules = fields.List(fields.Dict(), metadata={
        "description": "Stored rules that match no one, each {id, detail}: a regex saved "
                       "before patterns had to run on RE2. Fix or remove them."})


class PreviewSchema(Schema):
    """Who gains and who loses what (first 1000 users listed), with totals."""

    totals = fields.Dict(required=True, metadata={"description": "Counts over every user."})
    losing_all = fields.List(fields.Dict(), required=True,
                             metadata={"description": "Users who would lose every grant."})
    changes = fields.List(fields.Dict(), required=True)
    changes_truncated = fields.Boolean(required=True)
    units_not_created = fields.List(fields.Dict(), metadata={
        "description": "Units create_unit rules would make past [mapping] max_units, each "
                       "{unit, rule, users}: not made, and those rules give those users "
                       "nothing."})
    refused = fields.Boolean(metadata={
        "description": "Dry run only: whether applying this rule set now would be refused "
                       "(409), more than max_loss_share of the active users losing every "
                       "grant; force=true applies anyway."})
    max_loss_share = fields.Float(metadata={
        "description": "Dry run only: the deployment's [mapping] max_loss_share."})


def _current(ctx: ApiContext, org: Organization) -> dict[str, Any]:
    revision = latest_revision(ctx.session, org)
    ruleset = load_ruleset(ctx.session, org)
    return {**document(ruleset), "revision": revision.number if revision else None,
            "disabled_rules": [{"id": r.id, "detail": r.disabled}
                               for r in ruleset.rules if r.disabled]}


def _max_loss_share() -> float:
    return float(current_app.config["ROSTER"]["mapping"]["max_loss_share"])


def _apply(ctx: ApiContext, org: Organization, ruleset: RuleSet) -> Preview:
    return apply_ruleset(ctx.session, org, ruleset, ctx.actor,
                         max_loss_share=_max_loss_share(), force=ctx.args.get("force", False))


def _edit(ctx: ApiContext, org: Organization) -> dict[str, Any]:
    """The current rule set, read under the organization's mapping lock (exclusive, as the
    apply takes it): two edits of one rule set run one after the other, each on the other's
    result, instead of both editing the same old list."""
    own_mapping(ctx.session, org.id)
    ctx.session.refresh(org, ["policy"])  # loaded before the lock: maybe an older policy
    return _current(ctx, org)


def _stored_id(current: dict[str, Any], rule_id: str) -> str | None:
    """The stored rule id that is ``rule_id`` in any case (rule ids are one name in any
    case, as unit paths are, app/folding.py), or None."""
    wanted = fold_text(rule_id)
    found = [r["id"] for r in current["rules"] if fold_text(r["id"]) == wanted]
    return rule_id if rule_id in found else (found[0] if found else None)


def _missing(current: dict[str, Any], rule_id: str) -> NotFound:
    """No rule ``rule_id``: paths name a rule exactly; say which one a case slip meant."""
    same = _stored_id(current, rule_id)
    hint = f" (rule ids in paths are exact: {same!r})" if same is not None else ""
    return NotFound(f"rule {rule_id!r} does not exist{hint}")


def _with_rules(org_doc: dict[str, Any], rules: list[dict[str, Any]]) -> RuleSet:
    return parse_document({"policy": org_doc["policy"], "rules": rules})


def _apply_edit(ctx: ApiContext, org: Organization, current: dict[str, Any],
                rules: list[dict[str, Any]], index: int) -> Preview:
    """Apply ``rules``, whose ``index``-th is the request's ``rule``: a 400 about that rule
    names the body's field (``rule.role``), not its place in the stored list
    (``rules[7] (buyers).role``), which the client never sent."""
    try:
        return _apply(ctx, org, _with_rules(current, rules))
    except InvalidInput as exc:
        place = re.compile(rf"rules\[{index}\](?: \([^)]*\))?(?=[.:]|\Z)")
        if exc.field is None or not place.match(exc.field):
            raise
        raise InvalidInput(place.sub("rule", exc.detail, count=1),
                           field=place.sub("rule", exc.field, count=1)) from None


@api_route(bp, "/orgs/<org_id>/mapping", methods=["GET"], permission="mappings:read",
           tags=["mapping"], summary="Get the rule set and policy", response=RuleSetSchema)
def get_mapping(ctx: ApiContext) -> dict[str, Any]:
    """The organization's rules (highest priority first) and mapping policy."""
    assert ctx.org is not None
    return _current(ctx, ctx.org)


@api_route(bp, "/orgs/<org_id>/mapping", methods=["PUT"], permission="mappings:write",
           tags=["mapping"], summary="Replace the rule set and re-evaluate every user",
           query=ForceArgs, body=RuleSetBodySchema, response=PreviewSchema)
def put_mapping(ctx: ApiContext) -> dict[str, Any]:
    """Store the rule set and apply the grant diff; 409 if too many users lose everything."""
    assert ctx.org is not None
    return _apply(ctx, ctx.org, parse_document(ctx.body)).as_dict()


@api_route(bp, "/orgs/<org_id>/mapping:preview", methods=["POST"],
           permission="mappings:read", tags=["mapping"],
           summary="Dry run: who would gain and lose what under a proposed rule set",
           body=RuleSetBodySchema, response=PreviewSchema)
def preview_mapping(ctx: ApiContext) -> dict[str, Any]:
    """Evaluate the proposed rule set against every user; nothing is written. Says whether
    the apply would be refused, as `roster mapping apply --dry-run` does: the limit is the
    deployment's, which the client does not know."""
    assert ctx.org is not None
    result, share = preview(ctx.session, ctx.org, parse_document(ctx.body)), _max_loss_share()
    return {**result.as_dict(), "refused": result.loss_share > share, "max_loss_share": share}


@api_route(bp, "/orgs/<org_id>/mapping/rules", methods=["POST"], permission="mappings:write",
           tags=["mapping"], summary="Add one rule and re-evaluate", query=ForceArgs,
           body=RuleBodySchema, response=PreviewSchema, status=201)
def add_rule(ctx: ApiContext) -> dict[str, Any]:
    """Add a rule; its id must be new in this organization."""
    assert ctx.org is not None
    current = _edit(ctx, ctx.org)
    new, _ = parse_rule(ctx.body["rule"], "rule")
    same = _stored_id(current, new.id)
    if same is not None:
        raise Conflict(f"rule {same!r} already exists" + (
            "" if same == new.id else " (rule ids are one name in any case)"), field="rule.id")
    rules = [*current["rules"], ctx.body["rule"]]
    return _apply_edit(ctx, ctx.org, current, rules, len(rules) - 1).as_dict()


@api_route(bp, "/orgs/<org_id>/mapping/rules/<rule_id>", methods=["PUT"],
           permission="mappings:write", tags=["mapping"],
           summary="Replace one rule and re-evaluate", query=ForceArgs, body=RuleBodySchema,
           response=PreviewSchema)
def replace_rule(ctx: ApiContext, rule_id: str) -> dict[str, Any]:
    """Replace the rule named ``rule_id`` (the body's id, if given, must match)."""
    assert ctx.org is not None
    current = _edit(ctx, ctx.org)
    body = {**ctx.body["rule"], "id": ctx.body["rule"].get("id", rule_id)}
    if body["id"] != rule_id:
        raise Conflict("the rule's id cannot change; add a new rule instead", field="rule.id")
    if not any(r["id"] == rule_id for r in current["rules"]):
        raise _missing(current, rule_id)
    rules = [body if r["id"] == rule_id else r for r in current["rules"]]
    index = next(i for i, r in enumerate(rules) if r["id"] == rule_id)
    return _apply_edit(ctx, ctx.org, current, rules, index).as_dict()


@api_route(bp, "/orgs/<org_id>/mapping/rules/<rule_id>", methods=["DELETE"],
           permission="mappings:write", tags=["mapping"],
           summary="Remove one rule and re-evaluate", query=ForceArgs, response=PreviewSchema,
           errors=(409,))
def delete_rule(ctx: ApiContext, rule_id: str) -> dict[str, Any]:
    """Remove the rule; its grants go unless another rule or the default gives them."""
    assert ctx.org is not None
    current = _edit(ctx, ctx.org)
    if not any(r["id"] == rule_id for r in current["rules"]):
        raise _missing(current, rule_id)
    return _apply(ctx, ctx.org, _with_rules(
        current, [r for r in current["rules"] if r["id"] != rule_id])).as_dict()


