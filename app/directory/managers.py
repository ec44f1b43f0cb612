"""A user's manager reference (RFC 7643 §4.3, the enterprise ``manager``): linked to a user
of the same directory, or kept until that user arrives.

Entra sends the manager's SCIM id. Okta sends its profile's ``managerId`` as it is: most
often the manager's Okta id (which Okta also sends as the manager's ``externalId``), login
or email, never Roster's id, and a report is often pushed before its manager. A value that
names a live user of the directory by id, externalId or userName (in any case) links to
that user (``manager_id``). Any other value is kept as sent (``manager_ref``) and linked
when a user it names is created, renamed or restored (:func:`link_reports`). Until then
the user has no manager: not in SCIM output, filters or the approver chain.

A user may name itself (an HR hierarchy's top is often its own manager; Entra and Okta push
it, and a refusal would fail that user every cycle), and two users each other: what walks
managers stops at a user it met (app/mapping/access.py), and :func:`resolve_for` links a
value naming the user being written to itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.errors import InvalidInput
from app.events import emit
from app.models import User
from app.sql import among, fetch, fold, fold_text

MAX_REF = 500  # the column's length; longer is no manager anybody has

_LIVE = (User.directory_id == bindparam("directory_id"), User.deleted_at.is_(None))
# Built once, run in this order: an id (Entra), an externalId (Okta's own user id), a
# userName in any case (a login or email). Each is served by an index of its own.
_BY = [
    select(User.id).where(User.id == bindparam("value"), *_LIVE),
    select(User.id).where(User.external_id == bindparam("value"), *_LIVE).limit(2),
    select(User.id).where(fold(User.user_name) == fold(bindparam("value")), *_LIVE),
]
# The same, for a user being renamed: its own row still holds the names it is giving up.
_BY_OTHER = [statement.where(User.id != bindparam("user_id")) for statement in _BY]


# The users waiting for a manager that has just arrived, by their reference folded (an
# index lookup, ix_users_pending_manager): every create runs it. No ORDER BY, which made
# SQLite walk the whole table in id order; rows are locked, in id order, only when found.
_WAITING = select(User.id, User.manager_ref).where(
    User.directory_id == bindparam("directory_id"), User.manager_ref.is_not(None),
    among(fold(User.manager_ref), "folded"),
    User.deleted_at.is_(None))
_LOCK = (select(User).where(among(User.id))
         .order_by(User.id).with_for_update(key_share=True))


@dataclass(frozen=True)
class ManagerLink:
    """What a manager reference became: a user's id, or the reference kept as sent."""

    user_id: str | None = None
    pending: str | None = None


def resolve_manager(session: Session, directory_id: str, value: str | None, *,
                    other_than: str | None = None) -> ManagerLink:
    """The user ``value`` names in the directory (a user other than ``other_than``, when
    given), else the value kept for later."""
    if not value:
        return ManagerLink()
    if len(value) > MAX_REF:
        raise InvalidInput(f"manager.value is longer than {MAX_REF} characters",
                           field="manager")
    connection = session.connection()
    params = {"value": value, "directory_id": directory_id}
    if other_than is not None:
        params["user_id"] = other_than
    for statement in (_BY if other_than is None else _BY_OTHER):
        found = fetch(connection, statement, params)
        if len(found) == 1:  # two users with one externalId name nobody in particular
            return ManagerLink(user_id=found[0][0])
    return ManagerLink(pending=value)


def resolve_for(session: Session, directory_id: str, value: str | None, *,
                user_id: str, external_id: str | None, user_name: str,
                known_id: bool = True) -> ManagerLink:
    """:func:`resolve_manager` for the user being written, with the values it is written
    with: a value naming no other live user, but this one (its own externalId or userName,
    or its id when the client knows it: ``known_id``), links it to itself.

    HR systems often make the top of the hierarchy (the CEO) its own manager, and Okta
    pushes that as the CEO's own Okta id or login in the CEO's create: when the lookups ran,
    the user was not there (a create) or not live (a restore), or had other names (a
    rename), so the value was kept as a reference naming nobody, linked by the next write
    only (:func:`link_reports` skips the user itself). Two users sharing the externalId
    still name nobody (no more this one than the other).

    The lookups see the user's row as stored: on a PUT or PATCH renaming it, with the
    externalId and userName it is giving up. A value naming it only by one of those names
    nobody once written, so it is looked up again among the other users, and else kept as
    a reference (linked when a user of that name appears): it used to link the user to
    itself."""
    link = resolve_manager(session, directory_id, value)
    exact = {external_id, user_id if known_id else None} - {None}
    name = fold_text(user_name)
    if link.user_id == user_id and value and not _names(value, exact, name):
        link = resolve_manager(session, directory_id, value, other_than=user_id)
    if link.pending is None or not _names(link.pending, exact, name):
        return link
    others = fetch(session.connection(), _BY[1], {"value": link.pending,
                                                  "directory_id": directory_id})
    return link if any(row[0] != user_id for row in others) else ManagerLink(user_id=user_id)


def _names(ref: str, exact: set[str | None], name: str) -> bool:
    """``ref`` names the manager: its id or externalId as sent, or its userName folded."""
    return ref in exact or fold_text(ref) == name


def lock_reports(session: Session, manager: User) -> None:
    """Lock the live users waiting for ``manager`` now, as :func:`link_reports` would, for
    a write that links them after it writes rows a deprovisioning's guard takes at COMMIT.

    A reactivation marks the user's deprovisioning records restored; a report's
    deprovisioning holds the report's row and, opening a mass-event batch at its COMMIT,
    takes every unbatched record of the directory (app/lifecycle/guard.py: user rows
    first, records after). Linking the report only after the record was written
    deadlocked with it (PostgreSQL). The userName the user may take back on its
    reactivation (``released_user_name``) counts as its name here."""
    for name in {manager.user_name, manager.released_user_name} - {None}:
        _waiting(session, manager, name)


def _waiting(session: Session, manager: User, user_name: str) -> list[User]:
    """The live users waiting for ``manager`` under ``user_name`` (or its id or
    externalId), locked in id order, as user rows are everywhere
    (app/mapping/reevaluation.py)."""
    exact = {manager.id, manager.external_id} - {None}
    name = fold_text(user_name)
    found = fetch(session.connection(), _WAITING, {
        "directory_id": manager.directory_id,
        "folded": sorted({fold_text(v) for v in exact} | {name})})
    ids = sorted(uid for uid, ref in found if uid != manager.id and _names(ref, exact, name))
    if not ids:
        return []
    return [report for report in session.scalars(_LOCK, {"ids": ids})
            if report.manager_ref and _names(report.manager_ref, exact, name)]


def link_reports(session: Session, manager: User, actor: Actor) -> list[str]:
    """Link the live users waiting for ``manager`` (a ``manager_ref`` naming its id,
    externalId or userName); returns their ids. Locked in id order, as user rows are
    everywhere (app/mapping/reevaluation.py)."""
    waiting = _waiting(session, manager, manager.user_name)
    now = utcnow()
    for report in waiting:
        report.manager_id, report.manager_ref = manager.id, None
        report.version += 1
        report.updated_at = now
        record(session, organization_id=report.organization_id, action="user:update",
               actor=actor, subject_type="user", subject_id=report.id,
               data={"changed": ["manager_id"]})
        emit(session, organization_id=report.organization_id, type="user.updated",
             aggregate_id=report.id, payload={"user_id": report.id, "changed": ["manager_id"]})
    return [report.id for report in waiting]
