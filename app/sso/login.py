"""Login policy: find (SCIM-authoritative) or create/update (JIT) the user, open a session.

A deprovisioned user is always refused, whatever the policy, with ``sso:login:denied``.
A stable IdP subject signs in only the user it signed in first (app/sso/subject_links.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import literal, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.directory.directories import hold_active_directory
from app.directory.groups import GroupInput, create_group
from app.directory.hold import hold_user, hold_user_for_write
from app.directory.memberships import add_members, remove_members
from app.directory.users import WRITABLE_COLUMNS, UserInput, create_user, replace_user
from app.errors import Conflict, DomainError, Unauthorized
from app.json_input import JsonInputError, check_strings
from app.mapping.evaluation import reevaluate_users
from app.mapping.locks import share_mapping
from app.models import Directory, Group, Membership, User
from app.models.directory import UserStatus
from app.models.sso import LoginSession, SsoConnection
from app.sql import fold, fold_text
from app.sso.connections import DEFAULT_ATTRIBUTES, domain_owners
from app.sso.outcome import LoginFailed
from app.sso.subject_links import check_pin, pin_subject, pinned_user

SESSION_HOURS = 12


@dataclass(frozen=True)
class AssertedUser:
    """The identity an IdP asserted, in our words (from SAML attributes or OIDC claims)."""

    subject: str
    email: str | None = None
    stable_subject: bool = False  # OIDC sub, persistent NameID: pinned (subject_links.py)
    user_name: str | None = None
    external_id: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    department: str | None = None
    groups: tuple[str, ...] = field(default_factory=tuple)


def assert_user(conn: SsoConnection, subject: str, attributes: dict[str, list[str]], *,
                stable_subject: bool = False) -> AssertedUser:
    """Read our fields from the IdP's attributes, using the connection's names first."""
    def first(key: str) -> str | None:
        values = all_of(key)
        return values[0] if values else None

    def all_of(key: str) -> list[str]:
        names = [conn.attribute_map[key]] if conn.attribute_map.get(key) else []
        for name in [*names, *DEFAULT_ATTRIBUTES.get(key, [])]:
            if attributes.get(name):
                return [str(v) for v in attributes[name] if str(v)]
        return []

    email = first("email") or (subject if "@" in subject else None)
    return AssertedUser(
        subject=subject, email=email.lower() if email else None, stable_subject=stable_subject,
        user_name=first("user_name"), external_id=first("external_id"),
        given_name=first("given_name"), family_name=first("family_name"),
        department=first("department"), groups=tuple(dict.fromkeys(all_of("groups"))))


def _match_value(conn: SsoConnection, who: AssertedUser) -> tuple[str, str | None]:
    if conn.match_by == "nameid":
        return "user_name", who.subject
    if conn.match_by == "user_name":
        return "user_name", who.user_name or who.subject
    if conn.match_by == "external_id":
        return "external_id", who.external_id
    return "email", who.email


def find_user(session: Session, conn: SsoConnection, who: AssertedUser) -> User | None:
    """The organization's user the assertion names, per the connection's match_by.

    A SCIM-deleted user (kept for a restore within ``lifecycle.retention_days``, RFC 7644
    §3.6: gone from SCIM) gives way to a live user with the same value: a rehire with the
    leaver's email, or a new holder of a reused externalId, signs in as themselves, as a
    deleted user gives up its userName. So does a deprovisioned (not deleted) one: Okta
    deactivates leavers and never deletes them, and a rehire with the leaver's email was
    refused as ``ambiguous_user``. Only when no other user matches is a deprovisioned or
    deleted one found (and refused as deprovisioned)."""
    column, value = _match_value(conn, who)
    if not value:
        raise LoginFailed("missing_attribute", f"the assertion carries no {column}",
                          subject=who.subject)
    query = select(User).where(User.organization_id == conn.organization_id)
    if conn.directory_id:
        query = query.where(User.directory_id == conn.directory_id)
    if column == "email":
        query = query.where(User.primary_email == fold_text(value))
    elif column == "user_name":
        query = query.where(fold(User.user_name) == fold(literal(value)))
    else:
        query = query.where(User.external_id == value)
    # Live users first, of them the ones not deprovisioned; then the newest deleted one.
    found = list(session.scalars(query.order_by(
        User.deleted_at.is_not(None), User.status == UserStatus.deprovisioned,
        User.deleted_at.desc()).limit(2)))
    live = [user for user in found if user.deleted_at is None]
    current = [user for user in live if user.status != UserStatus.deprovisioned]
    if len(current) > 1 or (not current and len(live) > 1):
        raise LoginFailed("ambiguous_user", f"several users match {column}={value}",
                          subject=who.subject)
    return (current or live or found or [None])[0]


def _values(user: User | None, who: AssertedUser) -> dict[str, object]:
    values: dict[str, object] = {c: getattr(user, c) for c in WRITABLE_COLUMNS} if user else {}
    values["user_name"] = who.user_name or who.email or who.subject
    for column in ("external_id", "given_name", "family_name", "department"):
        if getattr(who, column):
            values[column] = getattr(who, column)
    if who.email:
        values["emails"] = [{"value": who.email, "type": "work", "primary": True}]
    return values


def _current_groups(session: Session, directory: Directory, user: User) -> list[Group]:
    return list(session.scalars(select(Group).join(Membership, Membership.group_id == Group.id)
                                .where(Membership.user_id == user.id,
                                       Group.directory_id == directory.id)))


def _lock_groups(session: Session, directory: Directory, user: User | None,
                 groups: tuple[str, ...]) -> None:
    """Lock the groups a JIT login may change (its user's groups and the asserted ones that
    exist) before it writes its user: step 2 of the lock order before step 3
    (``app.mapping.reevaluation``), as every SCIM group write takes them. Written the other
    way round, a login and a group PATCH sharing the user and a group could each hold what
    the other waits for: a deadlock on PostgreSQL. One statement in id order, so two logins
    sharing groups wait for each other instead. SQLite has one writer: nothing to order."""
    if session.connection().dialect.name != "postgresql":
        return
    ids = {g.id for g in _current_groups(session, directory, user)} if user else set()
    if groups:
        ids.update(session.scalars(select(Group.id).where(
            Group.directory_id == directory.id,
            fold(Group.display_name).in_([fold(literal(name)) for name in groups]))))
    if ids:
        session.execute(select(Group.id).where(Group.id.in_(sorted(ids)))
                        .order_by(Group.id).with_for_update(key_share=True))


def _sync_groups(session: Session, directory: Directory, user: User,
                 groups: tuple[str, ...], actor: Actor) -> None:
    """JIT: the asserted groups become the user's memberships in the connection's directory."""
    wanted = {fold_text(g): g for g in groups}
    current = _current_groups(session, directory, user)
    for group in current:
        if fold_text(group.display_name) not in wanted:
            remove_members(session, group, [user.id], actor)
    have = {fold_text(g.display_name) for g in current}
    for key, name in wanted.items():
        if key in have:
            continue
        group = _group_named(session, directory, name)
        if group is None:
            group = _create_group(session, directory, user, name, actor)
        if group is not None:
            add_members(session, group, [user.id], actor)


def _group_named(session: Session, directory: Directory, name: str) -> Group | None:
    return session.scalar(select(Group).where(
        Group.directory_id == directory.id, fold(Group.display_name) == fold(literal(name))))


def _create_group(session: Session, directory: Directory, user: User, name: str,
                  actor: Actor) -> Group | None:
    """Create the asserted group with the user in it (None), or, when a concurrent login or
    SCIM request created it first (PostgreSQL: the insert waited for its commit), return
    that group to join. The first logins of a new group's members often come at once."""
    try:
        with session.begin_nested():
            create_group(session, directory, GroupInput(display_name=name,
                                                        member_ids=[user.id]), actor)
        return None
    except Conflict:
        # Rolled back to the savepoint; the winner's group is committed and visible now.
        # It was not locked up front (it did not exist): the one late lock of this login.
        group = _group_named(session, directory, name)
        if group is None:
            raise
        return group


def _check_text(who: AssertedUser) -> None:
    """An OIDC claim (JSON) can hold \\u0000 or an unpaired surrogate: PostgreSQL cannot
    even compare such text and no encoder writes it, so the login is refused (traced)."""
    names = ("subject", "email", "user_name", "external_id", "given_name", "family_name",
             "department")
    try:
        check_strings({**{name: getattr(who, name) for name in names},
                       "groups": list(who.groups)})
    except JsonInputError as exc:
        name = exc.where.split(".")[0]
        # The trace keeps the subject, unless the subject is what cannot be stored.
        raise LoginFailed("invalid_attribute", f"the assertion's {name} is not text that "
                          "can be stored (NUL or an unpaired surrogate)",
                          subject=None if name == "subject" else who.subject) from None


def _check_lengths(who: AssertedUser, values: dict[str, object]) -> None:
    """JIT writes the asserted values into bounded columns: longer ones are refused (traced)
    on every database, rather than kept by SQLite and a 500 on PostgreSQL."""
    for column, value in values.items():
        limit = getattr(User.__table__.c[column].type, "length", None)
        if isinstance(value, str) and limit and len(value) > limit:
            raise LoginFailed("invalid_attribute", f"the assertion's {column} is longer "
                              f"than {limit} characters", subject=who.subject)
    limit = Group.__table__.c.display_name.type.length
    if any(len(group) > limit for group in who.groups):
        raise LoginFailed("invalid_attribute", f"an asserted group name is longer than "
                          f"{limit} characters", subject=who.subject)


def _jit(session: Session, conn: SsoConnection, who: AssertedUser, user: User | None,
         actor: Actor) -> User:
    # Before the group and user locks: JIT evaluates grants (app/mapping/locks.py).
    share_mapping(session, conn.organization_id)
    directory = session.get(Directory, conn.directory_id) if conn.directory_id else None
    if directory is None:
        raise LoginFailed("misconfigured", "JIT connection has no directory",
                          subject=who.subject)
    values = _values(user, who)
    _check_lengths(who, values)
    _lock_groups(session, directory, user, who.groups)
    if user is not None:
        # Step 3, before the assertion is written and the mapping judges the user: found
        # unlocked, it may have been taken out since (a deprovisioning that committed while
        # this login waited). Judged as first read, the mapping gave the leaver its grants
        # back and the refusal below kept them; refused here, nothing is written.
        user = hold_user_for_write(session, user.id)
        _refuse_gone(user, who)
        values = _values(user, who)
    if user is None:
        user = _create_user(session, conn, directory, who, values, actor)
    else:
        replace_user(session, user, UserInput(values, active=None), actor)
    _sync_groups(session, directory, user, who.groups, actor)
    reevaluate_users(session, user.organization_id, [user.id], actor)
    return user


def _create_user(session: Session, conn: SsoConnection, directory: Directory,
                 who: AssertedUser, values: dict[str, object], actor: Actor) -> User:
    """Create the asserted user; when a concurrent login of the same person (two tabs, a
    double submit) created it first, update that one instead. A userName held by another
    person stays a refusal (provisioning_error)."""
    try:
        with session.begin_nested():
            return create_user(session, directory, UserInput(values, active=True), actor)
    except Conflict:
        user = find_user(session, conn, who)  # the winner's commit is visible now
        if user is None:
            raise
        replace_user(session, user, UserInput(_values(user, who), active=None), actor)
        return user


def _hold_directory(session: Session, conn: SsoConnection, who: AssertedUser) -> None:
    """Step 1 of the lock order: the connection's directory, held active until the login
    commits, so a disable in flight (which deprovisions the directory's users and revokes
    their sessions) neither misses the user a JIT login creates nor the session it opens."""
    try:
        hold_active_directory(session, conn.directory_id or "")
    except Unauthorized:
        raise LoginFailed("directory_disabled", "the connection's directory is disabled",
                          subject=who.subject) from None


def _refuse_gone(user: User | None, who: AssertedUser, *, keep_changes: bool = False) -> None:
    if user is not None and (user.status in (UserStatus.deprovisioned, UserStatus.deleted)
                             or user.deleted_at is not None):
        raise LoginFailed("user_deprovisioned", "the user was deprovisioned",
                          subject=who.subject, payload={"user_id": user.id},
                          keep_changes=keep_changes)


def _refuse_foreign_domain(session: Session, conn: SsoConnection, user: User | None,
                           who: AssertedUser) -> None:
    """A connection without a directory matches any user of its organization, whichever
    directory provisioned it: one IdP could sign in the users of another by asserting their
    email (or userName). A user whose email domain an operator verified for other
    connections of the organization, and not for this one, belongs to those: refused."""
    if conn.directory_id or user is None:
        return
    owners = domain_owners(session, conn.organization_id, user.primary_email)
    if owners and conn.id not in owners:
        raise LoginFailed("domain_of_another_connection",
                          "the user's email domain is verified for another connection of "
                          "the organization, not for this one", subject=who.subject,
                          payload={"user_id": user.id})


def resolve_login(session: Session, conn: SsoConnection, who: AssertedUser,
                  actor: Actor) -> User:
    """Apply the connection's login policy; raise LoginFailed for every refusal.

    A JIT login applies the assertion (attributes, groups) and re-evaluates the mapping
    before the user is admitted: when that takes the user out (the IdP no longer asserts
    its last mapped group, and ``on_loss`` deprovisions or suspends), the refusal keeps
    those changes (``keep_changes``): rolled back with the login, they left the user in,
    with its grants, sessions and tokens, behind a failed deprovisioning record."""
    _check_text(who)
    if conn.directory_id:
        _hold_directory(session, conn, who)
    user = find_user(session, conn, who)
    _refuse_foreign_domain(session, conn, user, who)
    _refuse_gone(user, who)
    if conn.login_policy == "jit":
        # Before JIT writes: another person's assertion must not rewrite (or take out) U.
        user = user or pinned_user(session, conn, who.subject, who.stable_subject)
        check_pin(session, conn, who.subject, who.stable_subject, user)
        try:
            user = _jit(session, conn, who, user, actor)
        except DomainError as exc:
            # The directory refused what the IdP asserted (a userName another person
            # holds): a refusal of the subject the IdP vouched for, traced under it, not an
            # anonymous failure counted against the client's address.
            raise LoginFailed("provisioning_error", exc.detail, subject=who.subject) from None
    if user is None:
        raise LoginFailed("unknown_user", "no provisioned user matches the assertion",
                          subject=who.subject)
    # Step 3 of the lock order, after JIT's group locks, before the session is opened: the
    # user's row held until the login commits and its status re-read (loading refreshes
    # ``user``), so a login and a deprovisioning of its user wait for each other, with a
    # directory or without (app/directory/hold.py).
    hold_user(session, user.id)
    jit = conn.login_policy == "jit"
    _refuse_gone(user, who, keep_changes=jit)
    if not user.active or user.status != UserStatus.active:
        raise LoginFailed("user_inactive", f"the user is {user.status.value}",
                          subject=who.subject, payload={"user_id": user.id},
                          keep_changes=jit)
    pin_subject(session, conn, who.subject, who.stable_subject, user, actor)
    return user


def resolve_spending(session: Session, conn: SsoConnection, who: AssertedUser,
                     actor: Actor) -> User | LoginFailed:
    """:func:`resolve_login` in a savepoint; a refusal is returned, not raised, with the
    login's own changes rolled back (kept when ``keep_changes``).

    The caller's transaction then commits what the IdP's Response used up before the
    refusal: its AuthnRequest's claim and its replay-cache entry (SAML Profiles §4.1.4.5, a
    bearer assertion is accepted once). Rolled back with the refusal, an assertion refused
    for a leaver (its login in flight when the deprovisioning committed) could be posted
    again after a reactivation and opened a session. A domain error of a JIT write is the
    refusal ``provisioning_error``."""
    try:
        with session.begin_nested():
            try:
                return resolve_login(session, conn, who, actor)
            except LoginFailed as exc:
                if not exc.keep_changes:
                    raise
                return exc  # the savepoint is released: the JIT's decision commits
    except LoginFailed as exc:
        return exc
    except DomainError as exc:
        return LoginFailed("provisioning_error", exc.detail)


def open_session(session: Session, conn: SsoConnection, user: User, actor: Actor, *,
                 detail: dict[str, object],
                 authenticated_at: datetime | None = None) -> LoginSession:
    """Record the login: a revocable session and the audit event ``sso:login``.

    ``authenticated_at``: when the IdP says it authenticated the user (never later than
    now: an IdP clock ahead of ours does not make a login fresher than it is)."""
    now = utcnow()
    login = LoginSession(organization_id=conn.organization_id, user_id=user.id,
                         connection_id=conn.id, created_at=now, last_seen_at=now,
                         authenticated_at=min(authenticated_at or now, now),
                         expires_at=now + timedelta(hours=SESSION_HOURS))
    session.add(login)
    session.flush()
    record(session, organization_id=conn.organization_id, action="sso:login", actor=actor,
           subject_type="user", subject_id=user.id,
           data={"connection_id": conn.id, "protocol": conn.protocol,
                 "session_id": login.id, **detail})
    return login
