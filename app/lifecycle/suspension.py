"""Suspension by the mapping (on_loss = "suspend"): reversible, unlike deprovisioning."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.events import emit
from app.models import User
from app.models.directory import UserStatus


def suspend_user(session: Session, user: User, actor: Actor, *, reason: str) -> None:
    """Set status suspended (SCIM active stays as the IdP sent it), with audit and outbox."""
    if user.status != UserStatus.active:
        return
    user.status = UserStatus.suspended
    user.updated_at = utcnow()
    record(session, organization_id=user.organization_id, action="user:suspend", actor=actor,
           subject_type="user", subject_id=user.id, data={"reason": reason})
    emit(session, organization_id=user.organization_id, type="user.suspended",
         aggregate_id=user.id, payload={"user_id": user.id, "reason": reason})


def resume_user(session: Session, user: User, actor: Actor, *, reason: str) -> None:
    """Undo a mapping suspension (the user holds grants again), with audit and outbox."""
    if user.status != UserStatus.suspended or not user.active:
        return
    user.status = UserStatus.active
    user.updated_at = utcnow()
    record(session, organization_id=user.organization_id, action="user:resume", actor=actor,
           subject_type="user", subject_id=user.id, data={"reason": reason})
    emit(session, organization_id=user.organization_id, type="user.resumed",
         aggregate_id=user.id, payload={"user_id": user.id, "reason": reason})
