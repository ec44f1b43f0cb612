"""SCIM groups as a domain (RFC 7643 §4.2): create, update, PATCH, delete, and reads.

Their membership changes (on the rows they name only) are app/directory/memberships.py.
A write locks the group's row, then every user whose grants it may re-evaluate and every
user whose membership it adds or removes, all in one statement sorted by id, before it
changes a membership; the grants are re-evaluated once, at its end (the lock order is in
app/mapping/reevaluation.py). A user to add is checked live under that lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, bindparam, literal, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import Reader, core, utcnow
from app.directory.memberships import (
    MemberEdit,
    add_members,
    apply_edit,
    drop_members,
    finish_write,
    member_liveness,
    member_set,
    reevaluating,
    replace_among,
    touch,
    unique_ids,
)
from app.directory.refs import DirectoryLike
from app.directory.uniqueness import flush_unique, insert_unique
from app.errors import Conflict, NotFound
from app.events import emit
from app.mapping.reevaluation import Reevaluation, lock_users
from app.models import Group, Membership, User
from app.sql import among, fetch, fold, fold_text


@dataclass(frozen=True)
class GroupInput:
    """The writable state of a group: ``member_ids`` None means "leave members alone"."""

    display_name: str
    external_id: str | None = None
    extension_data: dict[str, Any] | None = None
    member_ids: Sequence[str] | None = None


# Statements built once: constructing a select costs more than running it on SQLite.
_GROUP_BY_ID = (Group.id == bindparam("group_id"),
                Group.directory_id == bindparam("directory_id"))
_GET_GROUP = select(Group).where(*_GROUP_BY_ID)
# FOR NO KEY UPDATE on PostgreSQL, as for users (app/directory/users.py).
_GET_GROUP_FOR_UPDATE = _GET_GROUP.with_for_update(key_share=True)
# The same group as a Core row of the groups table, for a read that only renders it.
_GROUP_ROW = select(Group.__table__).where(*_GROUP_BY_ID)
_MEMBER_IDS = (
    select(Membership.group_id, Membership.user_id)
    .join(User, User.id == Membership.user_id)
    .where(among(Membership.group_id), User.deleted_at.is_(None))
)
_GROUPS_OF_USERS = (
    select(Membership.user_id, Group.id, Group.display_name)
    .join(Group, Group.id == Membership.group_id)
    .where(among(Membership.user_id))
)


def get_group(session: Session, directory_id: str, group_id: str, *,
              for_update: bool = False) -> Group:
    """The group ``group_id`` of the directory, else NotFound."""
    stmt = _GET_GROUP_FOR_UPDATE if for_update else _GET_GROUP
    group = session.scalars(stmt, {"group_id": group_id, "directory_id": directory_id}).first()
    if group is None:
        raise NotFound(f"Group {group_id} not found")
    return group


def group_row(session: Reader, directory_id: str, group_id: str) -> Row[Any]:
    """``get_group`` as a row of the groups table (no ORM object), else NotFound."""
    found = fetch(core(session), _GROUP_ROW, {"group_id": group_id,
                                              "directory_id": directory_id})
    if not found:
        raise NotFound(f"Group {group_id} not found")
    return found[0]


def member_ids_of(session: Reader, group_ids: Sequence[str]) -> dict[str, list[str]]:
    """The live member user ids of each group, in one query."""
    out: dict[str, list[str]] = {gid: [] for gid in group_ids}
    if out:
        for gid, uid in fetch(core(session), _MEMBER_IDS, {"ids": list(out)}):
            out[gid].append(uid)
    return out


def groups_of_users(session: Reader,
                    user_ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """(group id, displayName) of each user's groups, in one query (RFC 7643 §4.1.2)."""
    out: dict[str, list[tuple[str, str]]] = {uid: [] for uid in user_ids}
    if out:
        for uid, gid, name in fetch(core(session), _GROUPS_OF_USERS, {"ids": list(out)}):
            out[uid].append((gid, name))
    return out


def _check_display_name(session: Session, directory_id: str, name: str,
                        except_id: str | None) -> None:
    taken = session.scalar(select(Group.id).where(
        Group.directory_id == directory_id, fold(Group.display_name) == fold(literal(name))))
    if taken is not None and taken != except_id:
        raise Conflict(f"displayName {name!r} is already taken in this directory",
                       field="displayName")


_DISPLAY_NAME_INDEX = ("display_name", "uq_groups")


def _taken(name: str) -> str:
    return f"displayName {name!r} is already taken in this directory"


def _flush_unique(session: Session, name: str) -> None:
    flush_unique(session, _DISPLAY_NAME_INDEX, _taken(name), "displayName")


def create_group(session: Session, directory: DirectoryLike, data: GroupInput,
                 actor: Actor) -> Group:
    """Create a group with its initial members (RFC 7644 §3.3).

    The members are locked before the name is written, as a rename locks its members
    before it writes the new name: a create that inserted a name first and then waited for
    a member, while a rename to that name held the member and waited on the uncommitted
    name in ``uq_groups_directory_display_name``, deadlocked (PostgreSQL)."""
    members = unique_ids(data.member_ids or ())
    reevaluation = (lock_users(session, directory.organization_id, members, members)
                    if members else None)
    _check_display_name(session, directory.id, data.display_name, None)
    now = utcnow()
    group = insert_unique(
        session, Group, {"directory_id": directory.id,
                         "organization_id": directory.organization_id,
                         "display_name": data.display_name, "external_id": data.external_id,
                         "extension_data": data.extension_data or {}, "version": 1,
                         "created_at": now, "updated_at": now},
        _DISPLAY_NAME_INDEX, _taken(data.display_name), "displayName")
    record(session, organization_id=group.organization_id, action="group:create",
           actor=actor, subject_type="group", subject_id=group.id,
           data={"displayName": group.display_name, "externalId": group.external_id})
    emit(session, organization_id=group.organization_id, type="group.created",
         aggregate_id=group.id, payload={"group_id": group.id,
                                         "display_name": group.display_name})
    if reevaluation is not None:
        add_members(session, group, members, actor, evaluation=reevaluation)
        finish_write(session, reevaluation, actor)
        group.version, group.updated_at = 1, group.created_at
    return group


def update_group(session: Session, group: Group, data: GroupInput,
                 actor: Actor) -> list[str] | None:
    """Set displayName, externalId, extensions and (if given) the full member list; returns
    the members as now shown (live ones, in the order given) when the list was given.

    The members are read once: for the difference, and for the answer (every one added
    was checked live, every one kept is as read)."""
    renamed = data.display_name != group.display_name
    rekeyed = data.external_id != group.external_id
    replacing = data.member_ids is not None
    live = member_liveness(session, group) if replacing else {}
    current = (set(live) if replacing
               else member_set(session, group) if renamed or rekeyed else set())
    wanted = unique_ids(data.member_ids or ())
    # A rename re-evaluates every member, old and new; a member change only the difference,
    # which is locked whatever the policy (``add_members``); a new externalId, which rules
    # may match on, every member too (locked only if they may be evaluated).
    changing = current.symmetric_difference(wanted) if replacing else set()
    affected = current | set(wanted) if renamed else changing
    rematched = current | set(wanted) if rekeyed else set()
    # Locked whatever the policy: a rename changes every member's ``groups`` (its version).
    reevaluation = lock_users(session, group.organization_id, affected | rematched, affected)
    _update(session, group, data, actor, reevaluation, current)
    if replacing:
        replace_among(session, group, wanted, current, actor, reevaluation)
    finish_write(session, reevaluation, actor)
    return [uid for uid in wanted if live.get(uid, True)] if replacing else None


def edit_group(session: Session, group: Group, data: GroupInput | None,
               changes: Sequence[MemberEdit], actor: Actor) -> Group:
    """PATCH (RFC 7644 §3.5.2): ``data`` (members ignored), then each membership operation
    in order on the rows it names; every user any of them may re-evaluate is locked first."""
    renamed = data is not None and data.display_name != group.display_name
    rekeyed = data is not None and data.external_id != group.external_id
    emptying = any(c.op in ("replace", "remove_all") for c in changes)
    current = member_set(session, group) if renamed or rekeyed or emptying else set()
    named = {i for c in changes for i in c.ids}
    # Locked whatever the policy: every user whose membership an operation may change, and
    # on a rename every member (its ``groups`` changes, so its version moves).
    reevaluation = lock_users(session, group.organization_id, current | named, current | named)
    if data is not None:
        _update(session, group, data, actor, reevaluation, current)
    for change in changes:
        apply_edit(session, group, change, actor, reevaluation)
    finish_write(session, reevaluation, actor)
    return group


def _update(session: Session, group: Group, data: GroupInput, actor: Actor,
            reevaluation: Reevaluation, members: set[str]) -> None:
    """displayName, externalId and extensions; a rename re-evaluates ``members`` (all)."""
    changed = []
    if data.display_name != group.display_name:
        if fold_text(data.display_name) != fold_text(group.display_name):
            _check_display_name(session, group.directory_id, data.display_name, group.id)
        group.display_name = data.display_name
        changed.append("displayName")
    if data.external_id != group.external_id:
        group.external_id = data.external_id
        changed.append("externalId")
    if (data.extension_data or {}) != (group.extension_data or {}):
        group.extension_data = data.extension_data or {}
        changed.append("extensions")
    if changed:
        touch(session, group)
        _flush_unique(session, group.display_name)
        record(session, organization_id=group.organization_id, action="group:update",
               actor=actor, subject_type="group", subject_id=group.id,
               data={"changed": changed, "displayName": group.display_name})
        emit(session, organization_id=group.organization_id, type="group.updated",
             aggregate_id=group.id, payload={"group_id": group.id, "changed": changed,
                                             "display_name": group.display_name})
        if "displayName" in changed:
            reevaluation.note(members)
        if "externalId" in changed:
            # Rules match groups by externalId too (app/mapping/rules.py): its members'
            # grants may change, their ``groups`` do not (it is not shown there).
            reevaluation.note_rematch(members)


def delete_group(session: Session, group: Group, actor: Actor) -> None:
    """Delete a group and its memberships (RFC 7644 §3.6); members are re-evaluated.

    Which members are shown is read once they are locked: a member's DELETE or restore
    committing while this waited for its row changed it. Read before, a member deleted
    meanwhile was announced as leaving a second time, and one restored meanwhile (and
    announced back in the group) was never announced as leaving it (PostgreSQL)."""
    # The member set cannot change under the group's lock; only who of them is shown can.
    with reevaluating(session, group, member_set(session, group), actor,
                      None) as reevaluation:
        # As a PATCH emptying the group: each member's audit history (by subject) and the
        # portal hear that it left, before the group goes.
        members = member_liveness(session, group)
        drop_members(session, group, members, actor, reevaluation)
        record(session, organization_id=group.organization_id, action="group:delete",
               actor=actor, subject_type="group", subject_id=group.id,
               data={"displayName": group.display_name, "members": len(members)})
        emit(session, organization_id=group.organization_id, type="group.deleted",
             aggregate_id=group.id, payload={"group_id": group.id,
                                             "display_name": group.display_name})
        session.delete(group)
        session.flush()
