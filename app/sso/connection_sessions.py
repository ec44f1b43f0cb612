"""Ending the logins made through an SSO connection, when an admin disables or deletes it.

A disabled (or deleted) connection refuses new logins; the logins it already made end too,
as a deprovisioning ends a user's: each live login session is revoked with every token Roster
issued on it (the portal's access and refresh tokens, RFC 7009 §2.1 in spirit), the IdP's
sealed ID token is dropped, ``session:revoke`` is audited per user and ``session.revoked``
queued per session, so back-channel logout (OIDC BCL 1.0 §2.5) tells the portal.

A login in flight and the end of its connection wait for each other (PostgreSQL): the login
holds the connection's row FOR KEY SHARE from its first read to its commit
(:func:`hold_connection`), and a disable or delete locks the row FOR UPDATE before the
revocation. Before, a login that read the connection enabled and committed
after the revocation's UPDATE (which cannot see an uncommitted session) left a live session
behind a disabled connection. SQLite has one writer: a login's write transaction and a
disable never overlap.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.events import emit
from app.models.sso import IssuedToken, LoginSession, SsoConnection

REASON = "connection_disabled"
DELETED = "connection_deleted"
# Session ids per token UPDATE: far below SQLite's and PostgreSQL's bound-parameter limits.
_CHUNK = 500


# FOR KEY SHARE: conflicts only with FOR UPDATE, which a disable and a delete take before
# they list the sessions (``_LOCK``), not with the plain UPDATE of any other change (a
# rename, a metadata refresh, a rekey). Those write the row at their commit, after the audit
# chain head (app/audit/log.py), which the login takes at its own commit: a login holding the
# row FOR SHARE waited for such an UPDATE that waited for its chain head, a deadlock.
# populate_existing: the row as committed when the lock was granted, not as first read.
_HOLD = (select(SsoConnection).where(SsoConnection.id == bindparam("b_id"))
         .with_for_update(read=True, key_share=True)
         .execution_options(populate_existing=True))
_LOCK = select(SsoConnection.id).where(SsoConnection.id == bindparam("b_id")).with_for_update()


def hold_connection(session: Session, connection_id: str) -> SsoConnection | None:
    """The connection (None: no such connection), its row held until this transaction ends:
    a login's first read of its connection, before its session is opened.

    PostgreSQL: one ``FOR KEY SHARE`` statement, which waits for a disable or delete in
    flight (they hold the row FOR UPDATE) and then reads its outcome (READ COMMITTED reads
    the row's latest version: disabled, or gone), and makes a later one wait for this
    login's commit before it lists the sessions to end. SQLite: a plain read; a write
    transaction holds the single write lock."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalars(_HOLD, {"b_id": connection_id}).first()
    return session.get(SsoConnection, connection_id)


def lock_connection(session: Session, connection_id: str) -> None:
    """Hold the connection's row FOR UPDATE (PostgreSQL) before this transaction changes it:
    a login in flight (:func:`hold_connection`) commits first, a later one waits.

    Before any pending change of the row is flushed (no autoflush here): FOR UPDATE taken
    after this transaction's own UPDATE locks only the new row version, which a login does
    not read, and a rename (a key column) written at the commit, after the audit chain
    head, deadlocked with a login waiting for that chain head. SQLite: one writer."""
    if session.get_bind().dialect.name == "postgresql":
        with session.no_autoflush:
            session.execute(_LOCK, {"b_id": connection_id})


def end_connection_sessions(session: Session, conn: SsoConnection, actor: Actor, *,
                            reason: str = REASON) -> int:
    """Revoke every live login session of ``conn`` and its tokens; audit and tell the
    portal. Returns how many sessions ended.

    The connection's row is held FOR UPDATE first (:func:`lock_connection`; a disable took
    it before changing the row), so a login holding it (:func:`hold_connection`) commits
    before the sessions are listed, and a later one waits and reads the connection disabled
    or gone."""
    lock_connection(session, conn.id)
    session.flush()
    now = utcnow()
    ended = session.execute(
        update(LoginSession)
        .where(LoginSession.connection_id == conn.id, LoginSession.revoked_at.is_(None),
               or_(LoginSession.expires_at.is_(None), LoginSession.expires_at > now))
        .values(revoked_at=now, revoked_reason=reason, upstream_id_token=None)
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
                     "reason": reason, "connection_id": conn.id})
        for login_id in sorted(login_ids):
            emit(session, organization_id=conn.organization_id, type="session.revoked",
                 aggregate_id=user_id, payload={"session_id": login_id, "user_id": user_id,
                                                "reason": reason})
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
