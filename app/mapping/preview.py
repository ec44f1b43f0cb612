"""Dry-run of a proposed rule set (who gains, who loses what) and the guarded apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import Actor
from app.errors import Conflict
from app.mapping.evaluation import (
    Context,
    UserDiff,
    diff_batch,
    load_context,
    organization_batches,
    reevaluate_organization,
)
from app.mapping.locks import own_mapping
from app.mapping.rules import DesiredGrant
from app.mapping.ruleset import RuleSet
from app.mapping.ruleset_check import check_against
from app.mapping.storage import record_revision, save_ruleset
from app.mapping.unit_plan import UnitPlan
from app.models import Grant, Organization, User
from app.models.directory import UserStatus

LISTED = 1000  # users listed in a preview; the totals always count everyone
NAMED_IN_REFUSAL = 20


class TooManyLosses(Conflict):
    """Applying would take every grant from more than the allowed share of users."""

    def __init__(self, detail: str, users: list[dict[str, str]]) -> None:
        super().__init__(detail, field="rules")
        self.users = users


@dataclass
class Preview:
    """The diff a proposed rule set would cause, with totals; nothing is written."""

    users_evaluated: int = 0
    active_users: int = 0
    grants_added: int = 0
    grants_removed: int = 0
    grants_updated: int = 0
    users_gaining: int = 0
    users_losing: int = 0
    # Users with any change (gains, losses or updates), each once: whom ``changes`` lists.
    users_changed: int = 0
    losing_all: list[dict[str, str]] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    checked: RuleSet | None = None
    plan: UnitPlan | None = None  # the run's new units, and those refused past the bound

    @property
    def loss_share(self) -> float:
        """Share of the organization's active users who would lose every grant."""
        return len(self.losing_all) / self.active_users if self.active_users else 0.0

    def totals(self) -> dict[str, Any]:
        """The counts (for audit data, revisions, CLI and API)."""
        return {"users_evaluated": self.users_evaluated, "active_users": self.active_users,
                "grants_added": self.grants_added, "grants_removed": self.grants_removed,
                "grants_updated": self.grants_updated, "users_gaining": self.users_gaining,
                "users_losing": self.users_losing, "users_losing_all": len(self.losing_all),
                "loss_share": round(self.loss_share, 4)}

    def as_dict(self) -> dict[str, Any]:
        """JSON form: totals, the users who would lose everything, and per-user changes."""
        return {"totals": self.totals(), "losing_all": self.losing_all,
                "changes": self.changes,
                "changes_truncated": len(self.changes) < self.users_changed,
                "units_not_created": self.plan.refusals()[:LISTED] if self.plan else []}


def _grant_view(want: DesiredGrant) -> dict[str, Any]:
    view = {"role": want.role, "unit": want.unit_path, "parameters": dict(want.parameters),
            "source": want.source}
    if want.creates_unit:  # the first user of the run needing the unit: it is made once
        view["creates_unit"] = True
    return view


def _stored_view(ctx: Context, grant: Grant) -> dict[str, Any]:
    role_keys = {v: k for k, v in ctx.role_ids.items()}
    return {"role": role_keys.get(grant.role_id, grant.role_id),
            "unit": ctx.units.by_id.get(grant.unit_id, grant.unit_id),
            "parameters": grant.parameters, "source": grant.source}


def _observe(result: Preview, ctx: Context, diff: UserDiff) -> None:
    """Count one user's diff into the preview (users, grants, who loses everything). A user
    deleted by SCIM (kept for the retention, holding nothing) is passed over unless it
    still held a grant to take away: it is not among the users the rules apply to."""
    result.plan = ctx.plan
    if diff.user.deleted_at is not None and not diff.changed:
        return
    result.users_evaluated += 1
    if not diff.changed:
        return
    result.users_changed += 1
    result.grants_added += len(diff.added)
    result.grants_removed += len(diff.removed)
    result.grants_updated += len(diff.updated)
    result.users_gaining += bool(diff.added)
    result.users_losing += bool(diff.removed)
    who = {"user_id": diff.user.id, "user_name": diff.user.user_name}
    if diff.loses_all:
        result.losing_all.append(who)
    if len(result.changes) < LISTED:
        result.changes.append({
            **who, "gains": [_grant_view(w) for w in diff.added],
            "loses": [_stored_view(ctx, g) for g in diff.removed],
            "updates": [{"before": _stored_view(ctx, g), "after": _grant_view(w)}
                        for g, w in diff.updated],
        })


def _start(session: Session, org: Organization, ruleset: RuleSet) -> tuple[Context, Preview]:
    ctx = load_context(session, org)
    checked = check_against(ruleset, ctx.roles, ctx.units)
    ctx.rules, ctx.policy = checked.rules, checked.policy
    return ctx, Preview(checked=checked, active_users=session.scalar(
        select(func.count(User.id)).where(User.organization_id == org.id,
                                          User.status == UserStatus.active)) or 0)


def preview(session: Session, org: Organization, ruleset: RuleSet) -> Preview:
    """What applying ``ruleset`` would change, user by user, in batches; writes nothing."""
    ctx, result = _start(session, org, ruleset)
    for batch in organization_batches(session, org.id):
        for diff in diff_batch(session, ctx, batch):
            _observe(result, ctx, diff)
    return result


def apply_ruleset(session: Session, org: Organization, ruleset: RuleSet, actor: Actor, *,
                  max_loss_share: float, force: bool = False) -> Preview:
    """Store ``ruleset`` and re-evaluate the organization, unless too many would lose all.

    One pass: the re-evaluation runs inside a savepoint and reports each diff; if more than
    ``max_loss_share`` of the active users lost every grant, the savepoint is rolled back
    (rules, grants, units, audit and outbox rows alike) and the refusal names them.

    The organization's mapping lock is held exclusively first (app/mapping/locks.py): no
    write evaluates grants under the old rules meanwhile, and none commits a user the
    batches below would miss.
    """
    own_mapping(session, org.id)
    _, result = _start(session, org, ruleset)
    assert result.checked is not None
    savepoint = session.begin_nested()
    removed_rules = save_ruleset(session, org, result.checked)
    reevaluate_organization(session, org, actor,
                            observe=lambda ctx, diff: _observe(result, ctx, diff))
    if result.loss_share > max_loss_share and not force:
        savepoint.rollback()
        names = [u["user_name"] for u in result.losing_all[:NAMED_IN_REFUSAL]]
        more = len(result.losing_all) - len(names)
        raise TooManyLosses(
            f"refused: {len(result.losing_all)} of {result.active_users} users "
            f"({result.loss_share:.0%}, limit {max_loss_share:.0%}) would lose every grant: "
            f"{', '.join(names)}{f' and {more} more' if more > 0 else ''} "
            "(apply with --force, or force=true in the API)",
            result.losing_all,
        )
    savepoint.commit()
    record_revision(session, org, result.checked, actor, result.totals(), removed_rules)
    return result
