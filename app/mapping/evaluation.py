"""Re-evaluation of grants after a change, inside the caller's transaction.

Facts are loaded per batch of users (one query for the users, one for their memberships and
groups, one for their grants); rules, roles, units and policy once per call. A membership
change therefore costs the same whatever the size of the group or the organization.

Every rule-made grant is written here (``run``), and each batch's changed users' versions
move here (RFC 7644 §3.14): one UPDATE of their ``access_version`` (app/directory/versions.py)
on rows ``diff_batch`` locked, but not of those whose own version this transaction moves.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.directory.versions import move_access_shown, own_moved
from app.events import emit
from app.mapping.locks import share_mapping
from app.mapping.rules import (
    DesiredGrant,
    GroupFacts,
    Policy,
    RoleFacts,
    RuleSpec,
    UnitIndex,
    UserFacts,
    resolve_grants,
)
from app.mapping.ruleset import parse_policy
from app.mapping.storage import POLICY_KEY, load_policy, load_rules
from app.mapping.unit_plan import UnitPlan, ensure_grant_unit, report_refused, unit_cap
from app.models import Grant, Group, Membership, Organization, Role, Unit, User
from app.models.directory import UserStatus
from app.models.mapping import MappingRule
from app.sql import among, fetch

BATCH_SIZE = 500
MANUAL = "manual"
EVENT_TYPES = {"add": "grant.added", "remove": "grant.removed", "update": "grant.updated"}


@dataclass
class Context:
    """What every user of one evaluation shares: rules, roles, units, policy."""

    org: Organization
    rules: tuple[RuleSpec, ...]
    policy: Policy
    roles: dict[str, RoleFacts]
    role_ids: dict[str, str]
    units: UnitIndex
    plan: UnitPlan  # units this run makes, one per path in any case, and the bound

    @property
    def idle(self) -> bool:
        """No rule and no default role: evaluation could only ever remove grants."""
        return not self.rules and not self.policy.default_role


@dataclass
class UserDiff:
    """How one user's stored grants differ from the desired ones."""

    user: User
    added: list[DesiredGrant] = field(default_factory=list)
    removed: list[Grant] = field(default_factory=list)
    updated: list[tuple[Grant, DesiredGrant]] = field(default_factory=list)
    had_grants: bool = False
    keeps_grants: bool = False
    active: bool = True

    @property
    def loses_all(self) -> bool:
        """An active user who held at least one grant before and holds none after."""
        return self.active and self.had_grants and not self.keeps_grants

    @property
    def changed(self) -> bool:
        """Anything to apply."""
        return bool(self.added or self.removed or self.updated)


@dataclass
class Summary:
    """Totals of one evaluation run."""

    users: int = 0
    added: int = 0
    removed: int = 0
    updated: int = 0
    lost_all: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form (for audit data and revisions)."""
        return {"users": self.users, "added": self.added, "removed": self.removed,
                "updated": self.updated, "users_losing_all": len(self.lost_all)}


def load_context(session: Session, org: Organization, rules: Sequence[RuleSpec] | None = None,
                 policy: Policy | None = None) -> Context:
    """Rules (stored, or proposed ones), roles, units and policy of an organization."""
    roles = list(session.scalars(select(Role).where(Role.organization_id == org.id)))
    units: dict[str, str] = {path: unit_id for path, unit_id in session.execute(
        select(Unit.path, Unit.id).where(Unit.organization_id == org.id))}
    return Context(
        org=org, rules=tuple(load_rules(session, org.id) if rules is None else rules),
        policy=load_policy(org) if policy is None else policy,
        roles={r.key: RoleFacts(r.key, r.parameters) for r in roles},
        role_ids={r.key: r.id for r in roles},
        units=UnitIndex.of(units), plan=UnitPlan(unit_cap(session), len(units)),
    )


def user_facts(user: User) -> UserFacts:
    """The rule-visible facts of a stored user; the work (else primary) address counts."""
    addresses = [a for a in (user.addresses or []) if isinstance(a, dict)]
    work = next((a for a in addresses if a.get("type") == "work"), None) or next(
        (a for a in addresses if a.get("primary")), None) or {}
    # Suspended with SCIM active=true means suspended by the mapping (on_loss): still
    # evaluated, so regaining a group gives the grants back and resumes the user.
    return UserFacts(
        id=user.id, active=user.active and user.deleted_at is None
        and user.status in (UserStatus.active, UserStatus.suspended),
        department=user.department, cost_center=user.cost_center, division=user.division,
        organization=user.organization_name, title=user.title, user_type=user.user_type,
        locality=work.get("locality"), country=work.get("country"),
    )


def diff_batch(session: Session, ctx: Context, user_ids: Sequence[str], *,
               lock: bool = False) -> list[UserDiff]:
    """Desired versus stored grants for a batch of users: three queries, no writes.

    ``lock`` (when the diff will be applied) takes the users' row locks first, so two
    transactions re-evaluating the same user run one after the other on PostgreSQL instead
    of both adding the same grant (SQLite already serializes writers).
    """
    # In id order, locked or not: a preview settles new units (app/mapping/unit_plan.py) user
    # after user as the apply does, so it names the units the apply makes.
    query = (select(User).where(User.id.in_(user_ids), User.organization_id == ctx.org.id)
             .order_by(User.id))
    if lock:  # FOR NO KEY UPDATE on PostgreSQL: foreign-key checks on the users still pass
        query = query.with_for_update(key_share=True)
    users = list(session.scalars(query))
    groups: dict[str, list[GroupFacts]] = defaultdict(list)
    for user_id, group_id, name, external_id in session.execute(
        select(Membership.user_id, Group.id, Group.display_name, Group.external_id)
        .join(Group, Group.id == Membership.group_id).where(Membership.user_id.in_(user_ids))
    ):
        groups[user_id].append(GroupFacts(group_id, name, external_id))
    stored: dict[str, list[Grant]] = defaultdict(list)
    for grant in session.scalars(select(Grant).where(Grant.user_id.in_(user_ids))):
        stored[grant.user_id].append(grant)
    diffs = []
    for user in users:
        facts = user_facts(user)
        desired = resolve_grants(facts, groups[user.id], ctx.rules, ctx.roles, ctx.units,
                                 ctx.policy, ctx.plan.planner(ctx.units))
        diff = _diff(ctx, user, stored[user.id], desired)
        diff.active = facts.active
        diffs.append(diff)
    return diffs


def _diff(ctx: Context, user: User, stored: list[Grant],
          desired: list[DesiredGrant]) -> UserDiff:
    manual = {(g.role_id, g.unit_id) for g in stored if g.source == MANUAL}
    managed = {(g.role_id, g.unit_id): g for g in stored if g.source != MANUAL}
    diff = UserDiff(user=user, had_grants=bool(stored), keeps_grants=bool(manual))
    for want in desired:
        key = (ctx.role_ids[want.role], want.unit_id)
        if key in manual:
            continue  # an operator's manual grant wins over the rules
        diff.keeps_grants = True
        have = managed.pop(key, None) if want.unit_id else None
        if have is None:
            diff.added.append(want)
        elif (have.parameters, have.source, have.reason) != (
                dict(want.parameters), want.source, _reason(want)):
            diff.updated.append((have, want))
    diff.removed = list(managed.values())
    return diff


def _reason(want: DesiredGrant) -> dict[str, Any]:
    return {**want.reason, "unit_path": want.unit_path}


def _ensure_unit(session: Session, ctx: Context, want: DesiredGrant,
                 actor: Actor) -> tuple[str, str]:
    """(id, path) of a desired grant's unit, creating missing units of its path if allowed."""
    if want.unit_id:
        return want.unit_id, want.unit_path
    ctx.units, unit_id, path = ensure_grant_unit(session, ctx.org, ctx.units, want.unit_path,
                                                 want.create_kind or "department", actor)
    return unit_id, path


def _payload(grant: Grant, role: str, unit_path: str) -> dict[str, Any]:
    return {"grant_id": grant.id, "user_id": grant.user_id, "role": role,
            "unit_id": grant.unit_id, "unit_path": unit_path, "parameters": grant.parameters,
            "source": grant.source}


def _write(session: Session, ctx: Context, grant: Grant, action: str, role: str,
           unit_path: str, actor: Actor, before: dict[str, Any] | None = None) -> None:
    data = _payload(grant, role, unit_path)
    if before is not None:  # an update: what the grant's event shows, before
        data["parameters_before"], data["source_before"] = before["parameters"], before["source"]
    record(session, organization_id=ctx.org.id, action=f"grant:{action}", actor=actor,
           subject_type="user", subject_id=grant.user_id, data=data)
    # The portal hears of changes its events show (parameters, deciding rule), not reasons.
    if before != {"parameters": grant.parameters, "source": grant.source}:
        emit(session, organization_id=ctx.org.id, type=EVENT_TYPES[action],
             aggregate_id=grant.user_id, payload=data)


def apply_diff(session: Session, ctx: Context, diff: UserDiff, actor: Actor) -> None:
    """Write one user's grant changes with their audit and outbox events."""
    if not diff.loses_all and diff.keeps_grants and diff.user.status == UserStatus.suspended:
        # The portal hears user.resumed before the grants it holds again, as it heard
        # user.suspended after the grants it lost: a consumer ignoring grants of a suspended
        # user stays right.
        from app.lifecycle.suspension import resume_user

        resume_user(session, diff.user, actor, reason="regained_grants")
    lost = _held_before_loss(session, ctx, diff)
    role_keys = {v: k for k, v in ctx.role_ids.items()}
    for grant in diff.removed:
        path = (grant.reason or {}).get("unit_path") or ctx.units.by_id.get(grant.unit_id, "")
        _write(session, ctx, grant, "remove", role_keys.get(grant.role_id, ""), path, actor)
        session.delete(grant)
    for grant, want in diff.updated:
        before = {"parameters": grant.parameters, "source": grant.source}
        grant.parameters, grant.source = dict(want.parameters), want.source
        grant.reason = _reason(want)
        _write(session, ctx, grant, "update", want.role, want.unit_path, actor, before)
    if diff.removed:
        session.flush()  # a removed and re-added (role, unit) must not collide
    for want in diff.added:
        unit_id, unit_path = _ensure_unit(session, ctx, want, actor)
        grant = Grant(organization_id=ctx.org.id, user_id=diff.user.id, unit_id=unit_id,
                      role_id=ctx.role_ids[want.role], parameters=dict(want.parameters),
                      source=want.source, reason={**want.reason, "unit_path": unit_path})
        session.add(grant)
        session.flush()
        _write(session, ctx, grant, "add", want.role, unit_path, actor)
    if diff.loses_all:
        _on_loss(session, ctx, diff.user, actor, lost or [])


def _held_before_loss(session: Session, ctx: Context,
                      diff: UserDiff) -> list[dict[str, Any]] | None:
    """The grants a user deprovisioned for losing them all held: its record and event name
    them, not the nothing left by then."""
    from app.lifecycle.revocation import grants_held  # lifecycle imports this module
    if not (diff.loses_all and ctx.policy.on_loss == "deprovision"):
        return None
    removed = {grant.id for grant in diff.removed}
    return [g for g in grants_held(session, diff.user) if g["grant_id"] in removed]


def _on_loss(session: Session, ctx: Context, user: User, actor: Actor,
             lost: list[dict[str, Any]]) -> None:
    """The organization's policy for a user who lost every grant (``lost``: those it held)."""
    # Imported here: lifecycle re-evaluates grants on reactivation, so it imports this module.
    from app.lifecycle import Trigger, deprovision_user
    from app.lifecycle.suspension import suspend_user

    if ctx.policy.on_loss == "deprovision":
        deprovision_user(session, user, actor, trigger=Trigger.lost_all_grants, lost=lost)
    elif ctx.policy.on_loss == "suspend":
        suspend_user(session, user, actor, reason=Trigger.lost_all_grants.value)


def _chunks(ids: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for item in ids:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


Observer = Callable[[Context, UserDiff], None]


def run(session: Session, ctx: Context, batches: Iterable[list[str]], actor: Actor,
        observe: Observer | None = None, settled: Collection[str] = ()) -> Summary:
    """Evaluate and apply batch after batch; ``observe`` sees each diff before it is applied.
    The users given or refused a grant (the access extension shows no parameters) move
    their access part, but ``settled`` ones and those whose own version moved here (a user
    deprovisioned for the loss): one UPDATE per batch, of rows ``diff_batch`` locked (FOR NO
    KEY UPDATE, id order) before any grant was written: no wait, no lock order step added."""
    summary = Summary()
    for batch in batches:
        moved = []
        for diff in diff_batch(session, ctx, batch, lock=True):
            summary.users += 1
            if observe is not None:
                observe(ctx, diff)
            if diff.changed:
                summary.added += len(diff.added)
                summary.removed += len(diff.removed)
                summary.updated += len(diff.updated)
                if diff.loses_all:
                    summary.lost_all.append(diff.user.id)
                apply_diff(session, ctx, diff, actor)
                if diff.user.id not in settled and (diff.added or diff.removed) \
                        and not own_moved(session, diff.user):
                    moved.append(diff.user.id)
        session.flush()
        move_access_shown(session, moved)
    report_refused(session, ctx.org, ctx.plan, actor)
    return summary


def organization_batches(session: Session, organization_id: str,
                         size: int = BATCH_SIZE) -> Iterator[list[str]]:
    """User ids of an organization, ``size`` at a time, keyset-paginated by id."""
    last = ""
    while True:
        batch = list(session.scalars(
            select(User.id).where(User.organization_id == organization_id, User.id > last)
            .order_by(User.id).limit(size)
        ))
        if not batch:
            return
        yield batch
        last = batch[-1]


def reevaluate_users(session: Session, organization_id: str, user_ids: Iterable[str],
                     actor: Actor, settled: Collection[str] = ()) -> Summary:
    """Recompute the grants of the given users and apply the diff (``settled``: ``run``)."""
    ids = sorted(set(user_ids))
    policy = evaluation_policy(session, organization_id, ids)
    if policy is None:
        return Summary()
    return evaluate_users(session, organization_id, ids, policy, actor, settled)


def evaluation_policy(session: Session, organization_id: str,
                      user_ids: Sequence[str]) -> Policy | None:
    """The organization's policy if evaluating these users can change anything, else None."""
    if not user_ids:
        return None
    # Callers take the lock first of all (before any row lock); here it only makes sure
    # that no evaluation, the idle check included, runs beside a rule-set apply.
    share_mapping(session, organization_id)
    # One plain query first: an organization without rules or a default role whose users
    # hold no rule-made grant (no mapping yet, the common case on every SCIM create) has
    # nothing to evaluate, and the rules, roles and units are never loaded.
    session.flush()  # the check runs on the connection: it must see this transaction's rows
    found = fetch(session.connection(), _IDLE_CHECK,
                  {"organization_id": organization_id, "user_ids": list(user_ids)})
    if not found:
        return None
    stored_policy, has_rules, has_mapped_grants = found[0]
    policy = parse_policy((stored_policy or {}).get(POLICY_KEY), stored=True)
    if not has_rules and not policy.default_role and not has_mapped_grants:
        return None
    return policy


def evaluate_users(session: Session, organization_id: str, user_ids: Sequence[str],
                   policy: Policy, actor: Actor, settled: Collection[str] = ()) -> Summary:
    """Evaluate and apply ``user_ids`` (sorted), locking each batch in id order."""
    org = session.get(Organization, organization_id)
    if org is None:
        return Summary()
    rules = load_rules(session, org.id)
    return run(session, load_context(session, org, rules, policy),
               _chunks(user_ids, BATCH_SIZE), actor, settled=settled)


_IDLE_CHECK = select(
    Organization.policy,
    exists().where(MappingRule.organization_id == Organization.id),
    exists().where(among(Grant.user_id, "user_ids"), Grant.source != MANUAL),
).where(Organization.id == bindparam("organization_id"))


def reevaluate_organization(session: Session, org: Organization, actor: Actor,
                            observe: Observer | None = None) -> Summary:
    """Recompute every user's grants after a rule or policy change, in keyset batches."""
    ctx = load_context(session, org)
    return run(session, ctx, organization_batches(session, org.id), actor, observe)
