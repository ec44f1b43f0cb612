"""Suspension by the mapping (on_loss = "suspend"): reversible, unlike deprovisioning."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.events import emit
from app.models import User
from app.models.directory import UserStatus


def _transition(session: Session, user: User, actor: Actor, status: UserStatus, verb: str,
                event: str, reason: str) -> None:
    user.status = status
    user.updated_at = utcnow()
    record(session, organization_id=user.organization_id, action=f"user:{verb}", actor=actor,
           subject_type="user", subject_id=user.id, data={"reason": reason})
    emit(session, organization_id=user.organization_id, type=event,
         aggregate_id=user.id, payload={"user_id": user.id, "reason": reason})


def suspend_user(session: Session, user: User, actor: Actor, *, reason: str) -> None:
    """Set status suspended (SCIM active stays as the IdP sent it), with audit and outbox."""
    if user.status == UserStatus.active:
        _transition(session, user, actor, UserStatus.suspended, "suspend", "user.suspended",
                    reason)


def resume_user(session: Session, user: User, actor: Actor, *, reason: str) -> None:
    """Undo a mapping suspension (the user holds grants again), with audit and outbox."""
    if user.status == UserStatus.suspended and user.active:
        _transition(session, user, actor, UserStatus.active, "resume", "user.resumed", reason)
