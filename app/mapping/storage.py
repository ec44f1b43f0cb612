"""Stored rule sets: rules as rows, the mapping policy in Organization.policy, revisions."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.log_throttle import EveryInterval
from app.mapping.rules import Policy, RuleSpec
from app.mapping.ruleset import (
    RuleSet,
    document,
    parse_policy,
    policy_document,
    rule_document,
    rules_of,
)
from app.models import Organization
from app.models.mapping import MappingRevision, MappingRule

POLICY_KEY = "mapping"
log = logging.getLogger("roster.mapping")
_DISABLED_LOG = EveryInterval(300.0)


def _row_document(row: MappingRule) -> dict[str, Any]:
    return {"id": row.key, "priority": row.priority, "description": row.description,
            "role": row.role_key, "match": row.match, **row.unit,
            "parameters": row.parameters}


def load_rules(session: Session, organization_id: str) -> tuple[RuleSpec, ...]:
    """The organization's stored rules, highest priority first."""
    rows = session.scalars(select(MappingRule).where(
        MappingRule.organization_id == organization_id
    ).order_by(MappingRule.priority.desc(), MappingRule.key))
    rules = rules_of([_row_document(r) for r in rows])
    disabled = {r.id: r.disabled for r in rules if r.disabled}
    if disabled and _DISABLED_LOG.due():
        # Saved before patterns had to run on RE2: the rule matches no one until fixed.
        log.warning("mapping rules disabled in organization %s: %s", organization_id,
                    disabled)
    return rules


def load_policy(org: Organization) -> Policy:
    """The organization's mapping policy (no default role, leavers untouched, if unset)."""
    return parse_policy((org.policy or {}).get(POLICY_KEY), stored=True)


def load_ruleset(session: Session, org: Organization) -> RuleSet:
    """The stored rule set of an organization, as a parsed document."""
    rows = list(session.scalars(select(MappingRule).where(
        MappingRule.organization_id == org.id
    ).order_by(MappingRule.priority.desc(), MappingRule.key)))
    return RuleSet(load_policy(org), rules_of([_row_document(r) for r in rows]),
                   {r.key: r.description for r in rows})


def save_ruleset(session: Session, org: Organization, ruleset: RuleSet) -> list[str]:
    """Replace the stored rules and policy with ``ruleset`` (already checked).

    Returns the ids of the rules it removed; :func:`record_revision` audits the change.
    """
    existing = {r.key: r for r in session.scalars(
        select(MappingRule).where(MappingRule.organization_id == org.id))}
    keep = {rule.id for rule in ruleset.rules}
    for key, row in existing.items():
        if key not in keep:
            session.delete(row)
    now = utcnow()
    for rule in ruleset.rules:
        doc = rule_document(rule, ruleset.descriptions.get(rule.id, ""))
        row = existing.get(rule.id) or MappingRule(organization_id=org.id, key=rule.id,
                                                   created_at=now)
        row.priority, row.description = rule.priority, doc.get("description", "")
        row.role_key, row.match, row.parameters = rule.role, doc["match"], doc.get(
            "parameters", {})
        row.unit = {k: doc[k] for k in ("unit", "unit_from", "create_unit", "unit_kind")
                    if k in doc}
        row.updated_at = now
        session.add(row)
    org.policy = {**(org.policy or {}), POLICY_KEY: policy_document(ruleset.policy)}
    session.flush()
    return sorted(set(existing) - keep)


def record_revision(session: Session, org: Organization, ruleset: RuleSet, actor: Actor,
                    summary: dict[str, Any], removed_rules: list[str]) -> MappingRevision:
    """Keep a snapshot of the applied rule set with its totals, and audit `mapping:apply`."""
    number = (session.scalar(select(func.max(MappingRevision.number)).where(
        MappingRevision.organization_id == org.id)) or 0) + 1
    revision = MappingRevision(organization_id=org.id, number=number,
                               document=document(ruleset), summary=summary,
                               actor_type=actor.type, actor_id=actor.id)
    session.add(revision)
    session.flush()
    record(session, organization_id=org.id, action="mapping:apply", actor=actor,
           subject_type="organization", subject_id=org.id,
           data={"revision": number, "rules": sorted(r.id for r in ruleset.rules),
                 "removed_rules": removed_rules, "summary": summary})
    return revision


def latest_revision(session: Session, org: Organization) -> MappingRevision | None:
    """The most recent revision of the organization's rule set, if any."""
    return session.scalar(select(MappingRevision).where(
        MappingRevision.organization_id == org.id
    ).order_by(MappingRevision.number.desc()).limit(1))
