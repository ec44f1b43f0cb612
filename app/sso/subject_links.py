"""Subject pinning: a connection's stable IdP subject signs in the user it signed in first.

Matching by email (the default) trusts whatever email the IdP asserts: an IdP account whose
email is changed to a colleague's (by its user, by helpdesk staff) signed in as that
colleague. A stable subject, the OIDC ``sub`` (OIDC Core §2: locally unique and never
reassigned within its issuer) or a SAML NameID of format ``persistent`` (SAML Core §8.3.7:
an opaque id, not reassigned), is tied to the user it first signs in through a connection
(``sso_subject_links``, migration 0035). Email, unspecified and transient NameIDs are not
pinned: an email NameID changes with a rename, and a transient one with every login.

A login resolving to user U with subject S on connection C is refused (``subject_mismatch``)
when (C, S) belongs to another user that is still live (not deprovisioned, not deleted), or
when U is tied on C to another subject. A deprovisioned or deleted holder gives way (a rehire
whose IdP account is reactivated), as does one outside the directory the connection reads
now: the link moves to U, audited ``sso:subject:relink``. An
operator unties a user after a legitimate change at the IdP (an account recreated):
``roster connection unlink`` or the API, audited ``sso:subject:unlink``.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.errors import NotFound
from app.models import User
from app.models.directory import UserStatus
from app.models.sso import SsoConnection
from app.models.sso_subjects import SubjectLink
from app.sso.outcome import LoginFailed

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
_SUBJECT_MAX = SubjectLink.__table__.c.subject.type.length


def stable_name_id(name_id_format: str | None) -> bool:
    """Whether a SAML NameID of this Format identifies its principal for good (SAML Core
    §8.3.7, persistent); email (§8.3.2), unspecified (§8.3.1) and transient (§8.3.8) do not."""
    return name_id_format == PERSISTENT


def _gone(user: User) -> bool:
    return (user.status in (UserStatus.deprovisioned, UserStatus.deleted)
            or user.deleted_at is not None)


def _gives_way(holder: User | None, conn: SsoConnection) -> bool:
    """A link's user that no longer holds it against another: gone (a leaver), or outside
    the directory the connection reads now (the connection was moved to another one)."""
    return holder is None or _gone(holder) or (
        conn.directory_id is not None and holder.directory_id != conn.directory_id)


def _link_of_subject(session: Session, conn: SsoConnection, subject: str) -> SubjectLink | None:
    return session.scalar(select(SubjectLink).where(SubjectLink.connection_id == conn.id,
                                                    SubjectLink.subject == subject))


def _link_of_user(session: Session, conn: SsoConnection, user_id: str) -> SubjectLink | None:
    return session.scalar(select(SubjectLink).where(SubjectLink.connection_id == conn.id,
                                                    SubjectLink.user_id == user_id))


def _refuse(subject: str, user: User, detail: str, **payload: str) -> LoginFailed:
    return LoginFailed("subject_mismatch", detail, subject=subject,
                       payload={"user_id": user.id, **payload})


def pinned_user(session: Session, conn: SsoConnection, subject: str,
                stable: bool) -> User | None:
    """The live user of the connection's directory that ``subject`` is tied to, if any: a
    JIT login whose asserted email matches no one (the IdP renamed the account) updates
    that user rather than creating a second one the pin would refuse."""
    if not stable or not conn.directory_id:
        return None
    link = _link_of_subject(session, conn, subject)
    holder = session.get(User, link.user_id) if link else None
    return None if _gives_way(holder, conn) else holder


def check_pin(session: Session, conn: SsoConnection, subject: str, stable: bool,
              user: User | None) -> SubjectLink | None:
    """Refuse (``subject_mismatch``) a login of ``user`` by ``subject`` that another live
    user's link, or the user's own link to another subject, contradicts; the subject's link
    when it may be kept or moved to the user."""
    if not stable or user is None:
        return None
    if len(subject) > _SUBJECT_MAX:
        raise LoginFailed("invalid_attribute", f"the assertion's subject is longer than "
                          f"{_SUBJECT_MAX} characters", subject=subject[:_SUBJECT_MAX])
    link = _link_of_subject(session, conn, subject)
    if link is not None and link.user_id != user.id:
        holder = session.get(User, link.user_id)
        if not _gives_way(holder, conn):
            raise _refuse(subject, user, "the IdP's subject signed in another user of "
                          "this connection", linked_user_id=link.user_id)
    own = _link_of_user(session, conn, user.id)
    if own is not None and own.subject != subject:
        raise _refuse(subject, user, "the user is linked to another IdP subject on this "
                      "connection")
    return link


def pin_subject(session: Session, conn: SsoConnection, subject: str, stable: bool,
                user: User, actor: Actor) -> None:
    """Tie ``subject`` to ``user`` on the connection (or note the login on their link),
    after :func:`check_pin`; a link a leaver held moves to the user, audited."""
    link = check_pin(session, conn, subject, stable, user)
    if not stable:
        return
    now = utcnow()
    if link is not None and link.user_id == user.id:
        link.last_login_at = now
        return
    if link is not None:
        record(session, organization_id=conn.organization_id, action="sso:subject:relink",
               actor=actor, subject_type="user", subject_id=user.id,
               data={"connection_id": conn.id, "from_user_id": link.user_id,
                     "reason": "holder_gone"})
        # A statement, not session.delete: a concurrent relink that removed it first is
        # no error here (the insert below then decides).
        session.execute(delete(SubjectLink).where(SubjectLink.id == link.id))
    try:
        with session.begin_nested():
            session.add(SubjectLink(connection_id=conn.id, subject=subject, user_id=user.id,
                                    created_at=now, last_login_at=now))
    except IntegrityError:
        # A concurrent first login tied the subject or the user first (PostgreSQL: the
        # insert waited for its commit): what it tied is judged as any link is.
        session.expire_all()
        link = check_pin(session, conn, subject, stable, user)
        if link is None or link.user_id != user.id:
            raise _refuse(subject, user, "the subject or the user was linked meanwhile") \
                from None


def unlink_user(session: Session, conn: SsoConnection, user_id: str, actor: Actor) -> str:
    """Untie the user from its subject on the connection (``sso:subject:unlink``), so its
    next login pins the subject it signs in with; the subject that was tied."""
    link = _link_of_user(session, conn, user_id)
    if link is None:
        raise NotFound("the user has no subject link on this connection")
    subject = link.subject
    record(session, organization_id=conn.organization_id, action="sso:subject:unlink",
           actor=actor, subject_type="user", subject_id=user_id,
           data={"connection_id": conn.id, "since": link.created_at.isoformat()})
    session.execute(delete(SubjectLink).where(SubjectLink.id == link.id))
    return subject


def link_count(session: Session, conn: SsoConnection) -> int:
    """How many users the connection's subjects are tied to."""
    return session.scalar(select(func.count()).select_from(SubjectLink).where(
        SubjectLink.connection_id == conn.id)) or 0


def forget_subjects(session: Session, conn: SsoConnection, actor: Actor, why: str) -> int:
    """Drop every link of the connection (its IdP changed: another issuer's or entity's
    subjects mean nothing here), audited ``sso:subject:unlink`` once; how many."""
    count = link_count(session, conn)
    if count:
        session.execute(delete(SubjectLink).where(SubjectLink.connection_id == conn.id))
        record(session, organization_id=conn.organization_id, action="sso:subject:unlink",
               actor=actor, subject_type="sso_connection", subject_id=conn.id,
               data={"connection_id": conn.id, "links": count, "reason": why})
    return count
