"""Reactivation: give back access under the current mapping, plus manual grants from history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.audit.sealed_records import seal_stamps
from app.db import utcnow
from app.directory.hold import directory_active, hold_directory_status
from app.errors import Conflict
from app.events import emit
from app.lifecycle.guard import DELIBERATE
from app.mapping.evaluation import reevaluate_users
from app.models import Grant, Role, Unit, User
from app.models.directory import UserStatus
from app.models.lifecycle import DeprovisionRecord


def hold_directory_for_reactivation(session: Session, directory_id: str) -> None:
    """Hold the directory active until this transaction ends (step 0 of the lock order:
    before the mapping lock and any user row), or raise Conflict when it is disabled.

    A user reactivated in a disabled directory would be active, with grants, where the
    IdP's tokens no longer work, so nothing could take it out again; and a disable
    committing beside the reactivation lists only the users active before it (README,
    "Deprovisioning"). Held FOR SHARE on PostgreSQL, a disable waits for this transaction
    and then deprovisions the user again; one in flight makes this wait, then refuse.
    """
    if not directory_active(hold_directory_status(session, directory_id)):
        raise Conflict(f"the directory {directory_id} of this user is disabled: enable it "
                       f"first (roster directory enable --directory {directory_id}, or POST "
                       f"/api/v1/orgs/<org>/directories/{directory_id}/enable)",
                       field="directory")


def last_open_record(session: Session, user: User) -> DeprovisionRecord | None:
    """The user's latest deprovisioning not yet undone (a failed one undid nothing)."""
    return session.scalars(
        select(DeprovisionRecord)
        .where(DeprovisionRecord.user_id == user.id, DeprovisionRecord.restored_at.is_(None),
               DeprovisionRecord.outcome == "applied")
        .order_by(DeprovisionRecord.received_at.desc()).limit(1)).first()


def operator_hold(session: Session, user: User) -> DeprovisionRecord | None:
    """The operator's deprovisioning that holds ``user`` out, when its latest deprovisioning
    not yet undone is one (``roster lifecycle deprovision``, ``POST .../deprovision``).

    Held, a deprovisioned user is not reactivated by its IdP's ``active: true``: Okta sends
    it with every profile push, so the account a security team took out would be back at
    the next routine sync. Only an operator's reactivation lifts the hold. A user the IdP
    has since deleted is not held: re-creating it is the IdP's own new start.
    """
    if user.status != UserStatus.deprovisioned:
        return None
    rec = last_open_record(session, user)
    return rec if rec is not None and rec.trigger == DELIBERATE else None


LOST_ALL_GRANTS = "lost_all_grants"  # app.lifecycle.users.Trigger.lost_all_grants


def held_grants_before(session: Session, user: User) -> bool:
    """Whether ``user`` is deprovisioned and held grants, or had just lost them to the
    mapping, when it was taken out (its latest deprovisioning not yet undone: the mapping's
    own, ``lost_all_grants``; or the IdP's, of a user the mapping had suspended or that held
    grants then). Reactivated by its IdP and left without a grant, such a user has lost
    every grant (app.mapping.loss.left_without_grants)."""
    if user.status != UserStatus.deprovisioned:
        return False
    rec = last_open_record(session, user)
    if rec is None:
        return False
    before = rec.state_before or {}
    return (rec.trigger == LOST_ALL_GRANTS or bool(before.get("grants"))
            or before.get("status") == UserStatus.suspended.value)


def restore_access(session: Session, user: User, actor: Actor,
                   announce: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Re-add manual grants kept in the record, then let the current mapping decide the rest.

    ``announce`` gets what will be restored before any grant is written, so the portal hears
    ``user.reactivated`` before the grants of the user it holds as gone. Rule-made grants
    are not copied back: the mapping may have changed since, and it is the mapping
    (reevaluate_users) that says what the user holds today.
    """
    rec = last_open_record(session, user)
    manual: dict[tuple[str, str], dict[str, Any]] = {}
    for item in rec.state_before.get("grants", []) if rec is not None else []:
        if item.get("source") == "manual" and _restorable(session, user, item):
            manual.setdefault((item["unit_id"], item["role_id"]), item)
    restored = {"record_id": rec.id if rec else None,
                "manual_grants_restored": [item["role_key"] for item in manual.values()]}
    announce(restored)
    for item in manual.values():
        _restore_manual(session, user, item, actor)
    if rec is not None:
        rec.restored_at = utcnow()
        seal_stamps(session, rec.organization_id, {rec.id: {"restored_at": rec.restored_at}},
                    actor)
    # The reactivation moved the user's version (settled): no second counter for its grants.
    reevaluate_users(session, user.organization_id, [user.id], actor, settled=[user.id])
    return restored


def _restorable(session: Session, user: User, item: dict[str, Any]) -> bool:
    """The unit and role still exist, and the user holds no such grant."""
    if session.get(Unit, item["unit_id"]) is None or session.get(Role, item["role_id"]) is None:
        return False
    return session.scalar(select(Grant.id).where(
        Grant.user_id == user.id, Grant.unit_id == item["unit_id"],
        Grant.role_id == item["role_id"])) is None


def _restore_manual(session: Session, user: User, item: dict[str, Any], actor: Actor) -> None:
    unit, role = session.get(Unit, item["unit_id"]), session.get(Role, item["role_id"])
    assert unit is not None  # checked by _restorable
    assert role is not None
    grant = Grant(organization_id=user.organization_id, user_id=user.id, unit_id=unit.id,
                  role_id=role.id, parameters=item.get("parameters") or {}, source="manual",
                  reason={"restored_from": "deprovision_record"})
    session.add(grant)
    session.flush()
    data = {"unit_id": unit.id, "unit_path": unit.path, "role_id": role.id, "role": role.key,
            "role_key": role.key, "source": "manual", "user_id": user.id,
            "parameters": grant.parameters}
    record(session, organization_id=user.organization_id, action="grant:add", actor=actor,
           subject_type="user", subject_id=user.id,
           data={**data, "grant_id": grant.id, "reason": "reactivated"})
    emit(session, organization_id=user.organization_id, type="grant.added",
         aggregate_id=user.id, payload={**data, "grant_id": grant.id, "reason": "reactivated"})
