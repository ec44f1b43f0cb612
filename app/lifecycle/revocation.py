"""Revoke what Roster issued for a user, and take away (but remember) their grants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, select, update
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


# Statements built once (building costs more than running them on SQLite), run as Core on
# the session's connection: the path wants ids and counts, not ORM objects.
_REVOKE_SESSIONS = (
    update(LoginSession)
    .where(LoginSession.user_id == bindparam("b_user"), LoginSession.revoked_at.is_(None))
    # The IdP's sealed ID token was kept for the logout of a live login only.
    .values(revoked_at=bindparam("b_now"), revoked_reason=bindparam("b_reason"),
            upstream_id_token=None)
    .returning(LoginSession.id)
)
_REVOKE_TOKENS = (
    update(IssuedToken)
    .where(IssuedToken.revoked_at.is_(None), IssuedToken.user_id == bindparam("b_user"))
    .values(revoked_at=bindparam("b_now"))
)
_REVOKE_SESSION_TOKENS = (
    update(IssuedToken)
    .where(IssuedToken.revoked_at.is_(None),
           (IssuedToken.user_id == bindparam("b_user"))
           | IssuedToken.session_id.in_(bindparam("b_sessions", expanding=True)))
    .values(revoked_at=bindparam("b_now"))
)
_HELD = (
    select(Grant.id, Grant.parameters, Grant.source, Grant.reason, Unit.id, Unit.name,
           Unit.path, Unit.kind, Role.id, Role.key, Role.name)
    .join(Unit, Grant.unit_id == Unit.id).join(Role, Grant.role_id == Role.id)
    .where(Grant.user_id == bindparam("b_user")).order_by(Unit.path, Role.key)
)
_DELETE_GRANTS = delete(Grant).where(Grant.id.in_(bindparam("b_ids", expanding=True)))


def revoke_sessions_and_tokens(session: Session, user: User, now: datetime,
                               reason: str) -> Revoked:
    """Revoke every live login session and every access/refresh token of the user.

    One UPDATE ... RETURNING for the sessions (PostgreSQL, SQLite >= 3.35), one for tokens.
    """
    conn = session.connection()
    session_ids = list(conn.execute(_REVOKE_SESSIONS, {
        "b_user": user.id, "b_now": now, "b_reason": reason}).scalars())
    params: dict[str, Any] = {"b_user": user.id, "b_now": now}
    if session_ids:
        params["b_sessions"] = session_ids
    result = conn.execute(_REVOKE_SESSION_TOKENS if session_ids else _REVOKE_TOKENS, params)
    return Revoked(session_ids=session_ids, tokens=result.rowcount or 0)


def grants_held(session: Session, user: User) -> list[dict[str, Any]]:
    """The user's grants with unit and role names: the snapshot a reactivation restores."""
    rows = session.connection().execute(_HELD, {"b_user": user.id})
    return [{
        "grant_id": grant_id, "unit_id": unit_id, "unit_name": unit_name,
        "unit_path": unit_path, "unit_kind": getattr(kind, "value", kind), "role_id": role_id,
        "role_key": role_key, "role_name": role_name, "parameters": parameters,
        "source": source, "reason": reason,
    } for (grant_id, parameters, source, reason, unit_id, unit_name, unit_path, kind,
           role_id, role_key, role_name) in rows]


def remove_grants(session: Session, user: User, held: list[dict[str, Any]],
                  actor: Actor) -> int:
    """Delete every grant (the snapshot stays in the deprovisioning record), with events."""
    if held:
        session.connection().execute(_DELETE_GRANTS, {"b_ids": [g["grant_id"] for g in held]})
    for item in held:
        data = {k: item[k] for k in ("unit_id", "unit_path", "role_id", "role_key", "source",
                                     "parameters")}
        data["role"] = item["role_key"]  # the key, as the mapping's grant events name it
        # The user is the subject, as of the mapping's grant events: a user's export
        # (`roster audit export --subject`) holds the access it lost.
        record(session, organization_id=user.organization_id, action="grant:remove",
               actor=actor, subject_type="user", subject_id=user.id,
               data={**data, "grant_id": item["grant_id"], "user_id": user.id,
                     "reason": "deprovisioned"})
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
