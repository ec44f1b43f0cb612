"""SCIM users as a domain: create, replace, delete, uniqueness and manager references.

The SCIM adapter translates wire format into :class:`UserInput`; everything here works on
model columns, runs inside the caller's transaction and never commits.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Row,
    Select,
    bindparam,
    literal_column,
    null,
    select,
    union_all,
)
from sqlalchemy import column as named
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import Reader, core, utcnow
from app.directory.managers import ManagerLink, link_reports, lock_reports, resolve_for
from app.directory.refs import DirectoryLike
from app.directory.uniqueness import flush_unique, insert_unique
from app.directory.user_names import free_user_name, taken
from app.directory.versions import display_changed, move_display, move_own
from app.errors import NotFound
from app.events import emit
from app.ids import new_id
from app.lifecycle import (
    Trigger,
    delete_user,
    deprovision_user,
    held_grants_before,
    operator_hold,
    reactivate_user,
    restorable_on_create,
)
from app.lifecycle.suspension import suspend_user
from app.mapping.evaluation import reevaluate_users
from app.mapping.loss import left_without_grants
from app.models import Grant, Group, Membership, Organization, Role, Unit, User
from app.models.directory import UserStatus
from app.sql import among, fetch, fold_text, json_rows

# Columns a SCIM client may write (everything else is server-managed).
WRITABLE_COLUMNS: tuple[str, ...] = (
    "external_id", "user_name", "name_formatted", "family_name", "given_name", "middle_name",
    "honorific_prefix", "honorific_suffix", "display_name", "nick_name", "profile_url",
    "title", "user_type", "preferred_language", "locale", "timezone", "emails",
    "phone_numbers", "ims", "photos", "addresses", "entitlements", "roles",
    "x509_certificates", "employee_number", "cost_center", "organization_name", "division",
    "department", "extension_data",
)
_LIST_COLUMNS = frozenset({"emails", "phone_numbers", "ims", "photos", "addresses",
                           "entitlements", "roles", "x509_certificates"})
# scrypt parameters: 16 MiB of memory per hash (RFC 7914 §2 recommends N=2^14 for logins).
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


@dataclass(frozen=True)
class UserInput:
    """The complete writable state of a user, as the adapter decoded it (RFC 7643 §4.1)."""

    values: dict[str, Any]
    active: bool | None = None  # None: the client did not say, keep the current state
    manager_id: str | None = None
    password: str | None = field(default=None, repr=False)


def hash_password(password: str) -> str:
    """A salted scrypt hash (RFC 7914) in a self-describing text form."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Check ``password`` against :func:`hash_password` output in constant time."""
    try:
        _, n, r, p, salt, digest = stored.split("$")
        computed = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                  r=int(r), p=int(p), dklen=32)
    except ValueError:
        return False
    return hmac.compare_digest(computed, base64.b64decode(digest))


def primary_email(emails: list[dict[str, Any]]) -> str | None:
    """The primary email (else the first), folded for matching as names are (``fold_text``:
    NFC, then lower case; RFC 7643 §2.4), so a sign-in asserting it in another Unicode form
    finds the user."""
    chosen = next((e for e in emails if e.get("primary") is True), emails[0] if emails else None)
    value = chosen.get("value") if chosen else None
    return fold_text(value) if isinstance(value, str) else None


# Statements built once: constructing a select costs more than running it on SQLite.
_LIVE_USER_BY_ID = (User.id == bindparam("user_id"),
                    User.directory_id == bindparam("directory_id"), User.deleted_at.is_(None))
_GET_USER = select(User).where(*_LIVE_USER_BY_ID)
# FOR NO KEY UPDATE on PostgreSQL: ids never change, so another transaction's foreign-key
# check on this user (a membership, a manager reference) need not wait for this one.
_GET_USER_FOR_UPDATE = _GET_USER.with_for_update(key_share=True)
# The same user as a Core row of the users table, for a read that only renders it.
_USER_ROW = select(User.__table__).where(*_LIVE_USER_BY_ID)
_DISPLAY_NAMES = select(User.id, User.display_name, User.user_name).where(
    among(User.id), User.deleted_at.is_(None))


def _grants_of_ids(*columns: Any) -> Select[Any]:
    """``columns`` of the grants of the bound user ids, with their unit, role and org."""
    return (select(*columns)
            .join(Unit, Unit.id == Grant.unit_id).join(Role, Role.id == Grant.role_id)
            .join(Organization, Organization.id == Grant.organization_id)
            .where(among(Grant.user_id)))


_ACCESS = (_grants_of_ids(Grant.user_id, Organization.slug, Unit.name, Unit.path, Role.key)
           .order_by(Grant.user_id, Unit.path, Role.key))
# A rendered user needs both (RFC 7643 §4.1.2 groups, and the Roster access extension):
# one statement instead of two, each row tagged with what it is.
_GROUPS_AND_ACCESS = union_all(
    select(Membership.user_id.label("user_id"), literal_column("'group'").label("kind"),
           Group.id.label("a"), Group.display_name.label("b"), null().label("c"),
           null().label("d"))
    .join(Group, Group.id == Membership.group_id).where(among(Membership.user_id)),
    _grants_of_ids(Grant.user_id, literal_column("'grant'"), Organization.slug, Unit.name,
                   Unit.path, Role.key),
).order_by(named("user_id"), named("kind"), named("c"), named("d"), named("a"))


# The same for a page of users, as two columns its statement selects (each user's rows as
# JSON, app.sql.json_rows): the page brings them along, and the statement above is not run.
ATTACHED = (
    select(json_rows(Group.id, Group.display_name)).select_from(Membership)
    .join(Group, Group.id == Membership.group_id).where(Membership.user_id == User.id)
    .scalar_subquery().label("attached_groups"),
    select(json_rows(Organization.slug, Unit.name, Unit.path, Role.key)).select_from(Grant)
    .join(Unit, Unit.id == Grant.unit_id).join(Role, Role.id == Grant.role_id)
    .join(Organization, Organization.id == Grant.organization_id)
    .where(Grant.user_id == User.id).scalar_subquery().label("attached_grants"),
)


def get_user(session: Session, directory_id: str, user_id: str, *,
             for_update: bool = False) -> User:
    """The live (not deleted) user ``user_id`` of the directory, else NotFound."""
    stmt = _GET_USER_FOR_UPDATE if for_update else _GET_USER
    user = session.scalars(stmt, {"user_id": user_id, "directory_id": directory_id}).first()
    if user is None:
        raise NotFound(f"User {user_id} not found")
    return user


def user_row(session: Reader, directory_id: str, user_id: str) -> Row[Any]:
    """``get_user`` as a row of the users table (no ORM object), else NotFound."""
    found = fetch(core(session), _USER_ROW, {"user_id": user_id, "directory_id": directory_id})
    if not found:
        raise NotFound(f"User {user_id} not found")
    return found[0]


def display_names(session: Reader, user_ids: Iterable[str | None]) -> dict[str, str]:
    """displayName (else userName) of each live user, in one query: how a manager or a
    group member is shown (``manager.displayName``, ``members.display``). A deleted user
    has none: it is 404 everywhere (RFC 7644 §3.6)."""
    ids = {m for m in user_ids if m}
    if not ids:
        return {}
    rows = fetch(core(session), _DISPLAY_NAMES, {"ids": list(ids)})
    return {uid: display or name for uid, display, name in rows}


def _state(data: UserInput, manager: ManagerLink, *,
           store_password_hash: bool) -> dict[str, Any]:
    """The columns the input sets: every writable column, the manager (linked or kept as
    sent, app/directory/managers.py), the primary email, and the password hash when one
    is to be stored."""
    values: dict[str, Any] = {}
    for column in WRITABLE_COLUMNS:
        value = data.values.get(column)
        if value is None and column in _LIST_COLUMNS:
            value = []
        elif value is None and column == "extension_data":
            value = {}
        values[column] = value
    values["manager_id"], values["manager_ref"] = manager.user_id, manager.pending
    values["primary_email"] = primary_email(values["emails"])
    if data.password is not None and store_password_hash:
        values["password_hash"] = hash_password(data.password)
    return values


def _assign(user: User, data: UserInput, manager: ManagerLink, *,
            store_password_hash: bool) -> list[str]:
    """Copy the input onto the row; returns the names of the columns that changed (a
    manager kept as sent counts as ``manager_id``)."""
    changed = []
    for column, value in _state(data, manager,
                                store_password_hash=store_password_hash).items():
        if column == "password_hash":
            user.password_hash = value
            changed.append("password")
        elif getattr(user, column) != value:
            setattr(user, column, value)
            name = "manager_id" if column == "manager_ref" else column
            if column != "primary_email" and name not in changed:
                changed.append(name)
    return changed


_USER_NAME_INDEX = ("user_name", "uq_users")


def _flush_unique(session: Session, user_name: str) -> None:
    flush_unique(session, _USER_NAME_INDEX, taken(user_name), "userName")


@dataclass(frozen=True)
class Created:
    """A created user; ``bare``: new, so in no group, and granted nothing by its first
    evaluation, so holding no grant (the only grants a new id can have): its resource needs
    no query for either."""

    user: User
    bare: bool


def create_user(session: Session, directory: DirectoryLike, data: UserInput, actor: Actor, *,
                store_password_hash: bool = False) -> User:
    """Create a user (RFC 7644 §3.3); userName is unique case-insensitively per directory."""
    return add_user(session, directory, data, actor,
                    store_password_hash=store_password_hash).user


def add_user(session: Session, directory: DirectoryLike, data: UserInput, actor: Actor, *,
             store_password_hash: bool = False) -> Created:
    """``create_user``, telling whether the user is ``bare``."""
    # Entra's "restore" (issue 7): re-creating a user deleted within retention brings it back
    # with the same id, the posted attributes applied as a PUT (one indexed query otherwise).
    restorable = restorable_on_create(session, directory.id, data.values.get("external_id"),
                                      data.values["user_name"], data.active)
    if restorable is not None:
        return Created(replace_user(session, restorable,
                                    UserInput(data.values, True, data.manager_id,
                                              data.password), actor,
                                    store_password_hash=store_password_hash), bare=False)
    user_name = data.values["user_name"]
    free_user_name(session, directory.id, user_name, None)
    user_id = new_id()
    manager = resolve_for(session, directory.id, data.manager_id, user_id=user_id,
                          external_id=data.values.get("external_id"), user_name=user_name,
                          known_id=False)
    now = utcnow()
    values = _state(data, manager, store_password_hash=store_password_hash)
    active = data.active is not False
    values.update(id=user_id, directory_id=directory.id,
                  organization_id=directory.organization_id,
                  active=active, status=UserStatus.active if active else UserStatus.suspended,
                  version=1, created_at=now, updated_at=now)
    user = insert_unique(session, User, values, _USER_NAME_INDEX, taken(user_name),
                         "userName")
    record(session, organization_id=user.organization_id, action="user:create", actor=actor,
           subject_type="user", subject_id=user.id,
           data={"userName": user.user_name, "externalId": user.external_id,
                 "active": user.active})
    emit(session, organization_id=user.organization_id, type="user.created",
         aggregate_id=user.id, payload={"user_id": user.id, "user_name": user.user_name,
                                        "directory_id": directory.id, "active": user.active})
    # Its first grants: the new user's version is 1 whatever they are (settled).
    first = reevaluate_users(session, user.organization_id, [user.id], actor,
                             settled=[user.id])
    link_reports(session, user, actor)
    return Created(user, bare=first.added == 0)


def replace_user(session: Session, user: User, data: UserInput, actor: Actor, *,
                 store_password_hash: bool = False) -> User:
    """Set the user's whole writable state (PUT, RFC 7644 §3.5.1; PATCH results too)."""
    user_name = data.values["user_name"]
    if fold_text(user_name) != fold_text(user.user_name):
        free_user_name(session, user.directory_id, user_name, user.id)
    # Only a new reference is resolved: the link the user has stays when its manager is
    # deleted later (shown again once it is restored).
    wanted = data.manager_id or None
    manager = (ManagerLink(user_id=wanted) if wanted is not None and wanted == user.manager_id
               else resolve_for(session, user.directory_id, wanted, user_id=user.id,
                                external_id=data.values.get("external_id"),
                                user_name=user_name))
    if display_changed(user, data.values.get("display_name"), user_name):
        move_display(session, user)  # shown by its reports and groups: their versions move
    changed = _assign(user, data, manager, store_password_hash=store_password_hash)
    flips = data.active is not None and data.active != user.active
    if flips and data.active and _held(session, user, actor):
        flips = False  # an operator took it out: the IdP's active=true does not undo that
    if changed or flips:
        move_own(session, user)
        user.updated_at = utcnow()
    if changed:
        _flush_unique(session, user_name)
        record(session, organization_id=user.organization_id, action="user:update",
               actor=actor, subject_type="user", subject_id=user.id,
               data={"changed": sorted(changed)})
        emit(session, organization_id=user.organization_id, type="user.updated",
             aggregate_id=user.id, payload={"user_id": user.id, "changed": sorted(changed)})
    links = bool({"user_name", "external_id"} & set(changed)) or bool(flips and data.active)
    if links:
        # Before a reactivation writes the user's deprovisioning records (lock_reports).
        lock_reports(session, user)
    # active goes through the lifecycle functions, which revoke access (issue: deprovisioning).
    if flips and data.active is False:
        deprovision_user(session, user, actor, trigger=Trigger.scim_active_false)
    elif flips:
        had_grants = held_grants_before(session, user)
        reactivate_user(session, user, actor)
        if had_grants and left_without_grants(session, user):
            # Lost every grant across its deprovisioning: the mapping's on_loss, reversible.
            suspend_user(session, user, actor, reason=Trigger.lost_all_grants.value)
    if changed:  # its version moved above: a change of its grants moves no second counter
        reevaluate_users(session, user.organization_id, [user.id], actor, settled=[user.id])
    if links:
        link_reports(session, user, actor)  # renamed or restored: reports may wait for it
    return user


def _held(session: Session, user: User, actor: Actor) -> bool:
    """Whether an operator's deprovisioning holds the user out (app.lifecycle.operator_hold);
    the refused reactivation is audited (``user:reactivate_held``)."""
    held = operator_hold(session, user)
    if held is not None:
        record(session, organization_id=user.organization_id, action="user:reactivate_held",
               actor=actor, subject_type="user", subject_id=user.id,
               data={"record_id": held.id, "reason": held.reason})
    return held is not None


def remove_user(session: Session, user: User, actor: Actor) -> None:
    """SCIM DELETE (RFC 7644 §3.6): through the lifecycle, then gone from SCIM at once."""
    delete_user(session, user, actor)
    move_own(session, user)


def access_of_users(session: Reader, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Each user's effective portal access from the grants table, in one query."""
    if not user_ids:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for user_id, org, unit, path, role in fetch(core(session), _ACCESS, {"ids": list(user_ids)}):
        _add_grant(out, user_id, org, unit, path, role)
    return out


def _add_grant(out: dict[str, dict[str, Any]], user_id: str, org: str, unit: str, path: str,
               role: str) -> None:
    entry = out.setdefault(user_id, {"organization": org, "grants": []})
    entry["grants"].append({"unit": unit, "unitPath": path, "role": role})


def groups_and_access(session: Reader, user_ids: Sequence[str],
                      ) -> tuple[dict[str, list[tuple[str, str]]], dict[str, dict[str, Any]]]:
    """``groups_of_users`` and ``access_of_users`` together, in one query."""
    groups: dict[str, list[tuple[str, str]]] = {uid: [] for uid in user_ids}
    access: dict[str, dict[str, Any]] = {}
    if groups:
        for user_id, kind, a, b, c, d in fetch(core(session), _GROUPS_AND_ACCESS,
                                               {"ids": list(groups)}):
            if kind == "group":
                groups[user_id].append((a, b))
            else:
                _add_grant(access, user_id, a, b, c, d)
    return groups, access


def attached_groups_and_access(rows: Sequence[Any],
                               ) -> tuple[dict[str, list[tuple[str, str]]],
                                          dict[str, dict[str, Any]]]:
    """``groups_and_access`` of users selected with the ``ATTACHED`` columns, in the same
    order (groups by id; grants by unit path, role and organization)."""
    groups: dict[str, list[tuple[str, str]]] = {}
    access: dict[str, dict[str, Any]] = {}
    for row in rows:
        groups[row.id] = sorted((a, b) for a, b in row.attached_groups or ())
        for org, unit, path, role in sorted(row.attached_grants or (),
                                            key=lambda g: (g[2], g[3], g[0], g[1])):
            _add_grant(access, row.id, org, unit, path, role)
    return groups, access
