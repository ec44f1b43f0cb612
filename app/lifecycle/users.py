"""User lifecycle transitions. Revocation of sessions, tokens and grants grows here."""

from __future__ import annotations

import enum

from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.events import emit
from app.models import User
from app.models.directory import UserStatus


class Trigger(enum.StrEnum):
    """What caused a deprovisioning (recorded with it)."""

    scim_active_false = "scim_active_false"
    scim_delete = "scim_delete"
    lost_all_grants = "lost_all_grants"
    directory_disabled = "directory_disabled"
    operator = "operator"


def deprovision_user(session: Session, user: User, actor: Actor, *, trigger: Trigger) -> None:
    """Take the user out: status deprovisioned, active false, audit and outbox events."""
    if user.status == UserStatus.deprovisioned and not user.active:
        return
    before = user.status.value
    user.active = False
    user.status = UserStatus.deprovisioned
    user.updated_at = utcnow()
    record(session, organization_id=user.organization_id, action="user:deprovision",
           actor=actor, subject_type="user", subject_id=user.id,
           data={"trigger": trigger.value, "status_before": before})
    emit(session, organization_id=user.organization_id, type="user.deprovisioned",
         aggregate_id=user.id, payload={"user_id": user.id, "trigger": trigger.value})


def delete_user(session: Session, user: User, actor: Actor) -> None:
    """SCIM DELETE (RFC 7644 §3.6): deprovision, then soft-delete so SCIM no longer sees it."""
    deprovision_user(session, user, actor, trigger=Trigger.scim_delete)
    user.status = UserStatus.deleted
    user.deleted_at = utcnow()
    record(session, organization_id=user.organization_id, action="user:delete", actor=actor,
           subject_type="user", subject_id=user.id, data={})


def reactivate_user(session: Session, user: User, actor: Actor) -> None:
    """active=true after a deprovisioning: the user is active again, same SCIM id."""
    if user.status == UserStatus.active and user.active:
        return
    user.active = True
    user.status = UserStatus.active
    user.deleted_at = None
    user.updated_at = utcnow()
    record(session, organization_id=user.organization_id, action="user:reactivate",
           actor=actor, subject_type="user", subject_id=user.id, data={})
    emit(session, organization_id=user.organization_id, type="user.reactivated",
         aggregate_id=user.id, payload={"user_id": user.id})
