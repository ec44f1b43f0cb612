"""Revoke what Roster issued for a user, and take away (but remember) their grants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.events import emit
from app.models import Grant, Role, Unit, User
from app.models.sso import IssuedToken, LoginSession


@dataclass(frozen=True)
class Revoked:
    """What one revocation took away."""

    session_ids: list[str]
    tokens: int


def revoke_sessions_and_tokens(session: Session, user: User, now: datetime,
                               reason: str) -> Revoked:
    """Revoke every live login session and every access/refresh token of the user."""
    session_ids = list(session.scalars(
        select(LoginSession.id).where(LoginSession.user_id == user.id,
                                      LoginSession.revoked_at.is_(None))))
    if session_ids:
        session.execute(update(LoginSession).where(LoginSession.id.in_(session_ids))
                        .values(revoked_at=now, revoked_reason=reason)
                        .execution_options(synchronize_session=False))
    live = IssuedToken.revoked_at.is_(None)
    owned = IssuedToken.user_id == user.id
    if session_ids:
        owned = owned | IssuedToken.session_id.in_(session_ids)
    result = session.execute(update(IssuedToken).where(live, owned).values(revoked_at=now)
                             .execution_options(synchronize_session=False))
    return Revoked(session_ids=session_ids, tokens=result.rowcount or 0)


def grants_held(session: Session, user: User) -> list[dict[str, Any]]:
    """The user's grants with unit and role names: the snapshot a reactivation restores."""
    stmt = (select(Grant, Unit, Role).join(Unit, Grant.unit_id == Unit.id)
            .join(Role, Grant.role_id == Role.id).where(Grant.user_id == user.id)
            .order_by(Unit.path, Role.key))
    return [{
        "grant_id": grant.id, "unit_id": unit.id, "unit_name": unit.name, "unit_path": unit.path,
        "unit_kind": unit.kind.value, "role_id": role.id, "role_key": role.key,
        "role_name": role.name, "parameters": grant.parameters, "source": grant.source,
        "reason": grant.reason,
    } for grant, unit, role in session.execute(stmt)]


def remove_grants(session: Session, user: User, held: list[dict[str, Any]],
                  actor: Actor) -> int:
    """Delete every grant (the snapshot stays in the deprovisioning record), with events."""
    if held:
        session.execute(delete(Grant).where(Grant.id.in_([g["grant_id"] for g in held]))
                        .execution_options(synchronize_session=False))
    for item in held:
        data = {k: item[k] for k in ("unit_id", "unit_path", "role_id", "role_key", "source",
                                     "parameters")}
        data["role"] = item["role_key"]  # the key, as the mapping's grant events name it
        record(session, organization_id=user.organization_id, action="grant:remove",
               actor=actor, subject_type="grant", subject_id=item["grant_id"],
               data={**data, "user_id": user.id, "reason": "deprovisioned"})
        emit(session, organization_id=user.organization_id, type="grant.removed",
             aggregate_id=user.id, payload={**data, "grant_id": item["grant_id"],
                                            "user_id": user.id, "reason": "deprovisioned"})
    return len(held)


def announce_revoked_sessions(session: Session, user: User, revoked: Revoked,
                              actor: Actor) -> None:
    """Audit the revocation once and tell the portal about each session it must drop."""
    if not revoked.session_ids and not revoked.tokens:
        return
    record(session, organization_id=user.organization_id, action="session:revoke",
           actor=actor, subject_type="user", subject_id=user.id,
           data={"session_ids": revoked.session_ids, "tokens_revoked": revoked.tokens,
                 "reason": "deprovisioned"})
    for session_id in revoked.session_ids:
        emit(session, organization_id=user.organization_id, type="session.revoked",
             aggregate_id=user.id, payload={"session_id": session_id, "user_id": user.id,
                                            "reason": "deprovisioned"})
