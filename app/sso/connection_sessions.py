"""Ending the logins made through an SSO connection, when an admin disables it.

A disabled connection refuses new logins; the logins it already made end too, as a
deprovisioning ends a user's: each live login session is revoked with every token Roster
issued on it (the portal's access and refresh tokens, RFC 7009 §2.1 in spirit), the IdP's
sealed ID token is dropped, ``session:revoke`` is audited per user and ``session.revoked``
queued per session, so back-channel logout (OIDC BCL 1.0 §2.5) tells the portal.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.events import emit
from app.models.sso import IssuedToken, LoginSession, SsoConnection

REASON = "connection_disabled"
# Session ids per token UPDATE: far below SQLite's and PostgreSQL's bound-parameter limits.
_CHUNK = 500


def end_connection_sessions(session: Session, conn: SsoConnection, actor: Actor) -> int:
    """Revoke every live login session of ``conn`` and its tokens; audit and tell the
    portal. Returns how many sessions ended."""
    now = utcnow()
    ended = session.execute(
        update(LoginSession)
        .where(LoginSession.connection_id == conn.id, LoginSession.revoked_at.is_(None),
               or_(LoginSession.expires_at.is_(None), LoginSession.expires_at > now))
        .values(revoked_at=now, revoked_reason=REASON, upstream_id_token=None)
        .returning(LoginSession.id, LoginSession.user_id)
        .execution_options(synchronize_session=False)).all()
    by_user: dict[str, list[str]] = defaultdict(list)
    for login_id, user_id in ended:
        by_user[user_id].append(login_id)
    for user_id, login_ids in sorted(by_user.items()):
        tokens = _revoke_tokens(session, sorted(login_ids), now)
        record(session, organization_id=conn.organization_id, action="session:revoke",
               actor=actor, subject_type="user", subject_id=user_id,
               data={"session_ids": sorted(login_ids), "tokens_revoked": tokens,
                     "reason": REASON, "connection_id": conn.id})
        for login_id in sorted(login_ids):
            emit(session, organization_id=conn.organization_id, type="session.revoked",
                 aggregate_id=user_id, payload={"session_id": login_id, "user_id": user_id,
                                                "reason": REASON})
    return len(ended)


def _revoke_tokens(session: Session, login_ids: list[str], now: datetime) -> int:
    """Revoke the live tokens issued on these login sessions; how many."""
    revoked = 0
    for start in range(0, len(login_ids), _CHUNK):
        revoked += session.execute(
            update(IssuedToken)
            .where(IssuedToken.session_id.in_(login_ids[start:start + _CHUNK]),
                   IssuedToken.revoked_at.is_(None))
            .values(revoked_at=now).execution_options(synchronize_session=False)
        ).rowcount or 0
    return revoked
