"""SCIM groups and memberships as a domain (RFC 7643 §4.2).

Membership changes touch only the rows they name: adding one member to a 50,000-member
group reads and writes that one row, never the other 49,999.

A write locks the group's row, then every user whose grants it may re-evaluate and every
user whose membership it adds or removes, all in one statement sorted by id, before it
changes a membership; the grants are re-evaluated once, at its end (the lock order is in
app/mapping/reevaluation.py). A user to add is checked live under that lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Row, bindparam, delete, insert, literal, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import Reader, core, utcnow
from app.directory.refs import DirectoryLike
from app.directory.uniqueness import flush_unique, insert_unique
from app.directory.versions import move_groups_shown, own_moved_among
from app.errors import Conflict, InvalidInput, NotFound
from app.events import emit
from app.mapping.reevaluation import Reevaluation, finish, lock_users
from app.models import Group, Membership, User
from app.sql import among, fetch, fold, fold_text


@dataclass(frozen=True)
class GroupInput:
    """The writable state of a group: ``member_ids`` None means "leave members alone"."""

    display_name: str
    external_id: str | None = None
    extension_data: dict[str, Any] | None = None
    member_ids: Sequence[str] | None = None


def _unique(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


# Statements built once: constructing a select costs more than running it on SQLite.
_LIVE_USER_IDS = select(User.id).where(among(User.id), User.directory_id == bindparam(
    "directory_id"), User.deleted_at.is_(None))
_PRESENT_MEMBERS = select(Membership.user_id).where(
    Membership.group_id == bindparam("group_id"), among(Membership.user_id))
_REMOVE_MEMBERS = delete(Membership).where(Membership.group_id == bindparam("group_id"),
                                           among(Membership.user_id))
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


def _live_users(session: Session, directory_id: str, ids: list[str]) -> None:
    """Every id must be a live user of the same directory (RFC 7643 §4.2 members.value)."""
    found = {row[0] for row in fetch(core(session), _LIVE_USER_IDS, {
        "ids": ids, "directory_id": directory_id})}
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InvalidInput(f"members must be users of this directory; unknown: {shown}",
                           field="members")


def _touch(group: Group) -> None:
    group.version += 1
    group.updated_at = utcnow()


def _members_among(session: Session, group: Group, ids: list[str]) -> list[str]:
    """Which of ``ids`` are members of ``group`` (only those rows are read)."""
    if not ids:
        return []
    return [row[0] for row in fetch(core(session), _PRESENT_MEMBERS,
                                     {"ids": ids, "group_id": group.id})]


@contextmanager
def _reevaluating(session: Session, group: Group, user_ids: Iterable[str], actor: Actor,
                  outer: Reevaluation | None) -> Iterator[Reevaluation]:
    """The caller's re-evaluation, else this change's own: ``user_ids`` (whose memberships
    change) locked first, in one sorted statement whatever the policy, the changed ones
    evaluated when the block ends without an error."""
    if outer is not None:
        yield outer  # the caller locked a superset up front and evaluates at its end
        return
    ids = list(user_ids)
    own = lock_users(session, group.organization_id, ids, ids)
    yield own
    _finish(session, own, actor)


def _finish(session: Session, reevaluation: Reevaluation, actor: Actor) -> None:
    """The write's end: the users whose groups it changed (``note``, all locked up front)
    are evaluated, then show new ``groups``, so their versions move (one UPDATE). A change
    of their grants moves no second counter (settled), and a user the evaluation
    deprovisioned (its last mapped group gone) moved its own version for the change: its
    groups part stays, one part moved per request (RFC 7644 §3.14)."""
    finish(session, reevaluation, actor, settled=reevaluation.changed)
    moved = own_moved_among(session, reevaluation.changed)
    move_groups_shown(session, [uid for uid in reevaluation.changed if uid not in moved])


def add_members(session: Session, group: Group, user_ids: Iterable[str], actor: Actor, *,
                evaluation: Reevaluation | None = None) -> list[str]:
    """Add members by id (RFC 7644 §3.5.2.1); returns the ids that were not members yet.

    The users to add are checked live once they are locked (by the caller, or here): one
    whose SCIM DELETE committed meanwhile is unknown (400), exactly as if the DELETE had
    come first, and never a member added and announced after its DELETE announced the
    removal (app/lifecycle/visibility.py)."""
    ids = _unique(user_ids)
    if not ids:
        return []
    present = set(_members_among(session, group, ids))
    added = [i for i in ids if i not in present]
    if not added:
        _live_users(session, group.directory_id, ids)
        return []
    with _reevaluating(session, group, added, actor, evaluation) as reevaluation:
        _live_users(session, group.directory_id, ids)
        now = utcnow()
        session.execute(insert(Membership), [
            {"group_id": group.id, "user_id": uid, "created_at": now} for uid in added])
        _membership_changed(session, group, added, actor, "add", reevaluation)
    return added


def remove_members(session: Session, group: Group, user_ids: Iterable[str], actor: Actor, *,
                   evaluation: Reevaluation | None = None) -> list[str]:
    """Remove the named members only (RFC 7644 §3.5.2.2); returns those that were members."""
    ids = _unique(user_ids)
    removed = _members_among(session, group, ids)
    if removed:
        with _reevaluating(session, group, removed, actor, evaluation) as reevaluation:
            fetch(core(session), _REMOVE_MEMBERS, {"ids": removed, "group_id": group.id})
            _membership_changed(session, group, removed, actor, "remove", reevaluation)
    return removed


def _member_set(session: Session, group: Group) -> set[str]:
    return set(session.scalars(select(Membership.user_id)
                               .where(Membership.group_id == group.id)))


def remove_all_members(session: Session, group: Group, actor: Actor, *,
                       evaluation: Reevaluation | None = None) -> list[str]:
    """Empty the group (PATCH remove of ``members`` without a filter, RFC 7644 §3.5.2.2)."""
    removed = list(_member_set(session, group))
    if removed:
        with _reevaluating(session, group, removed, actor, evaluation) as reevaluation:
            session.execute(delete(Membership).where(Membership.group_id == group.id))
            _membership_changed(session, group, removed, actor, "remove", reevaluation)
    return removed


def replace_members(session: Session, group: Group, user_ids: Iterable[str], actor: Actor, *,
                    evaluation: Reevaluation | None = None) -> tuple[list[str], list[str]]:
    """Make the members exactly ``user_ids`` (PUT, PATCH replace); returns (added, removed)."""
    return _replace(session, group, _unique(user_ids), _member_set(session, group), actor,
                    evaluation)


def _replace(session: Session, group: Group, wanted: list[str], current: set[str],
             actor: Actor, evaluation: Reevaluation | None) -> tuple[list[str], list[str]]:
    wanted_set = set(wanted)
    gone = [i for i in current if i not in wanted_set]
    new = [i for i in wanted if i not in current]
    # Both passes under one lock of all their users: locking the removed ones, then the
    # added ones, is what let two PUTs sharing users deadlock (audit F4).
    with _reevaluating(session, group, gone + new, actor, evaluation) as reevaluation:
        removed = remove_members(session, group, gone, actor, evaluation=reevaluation)
        added = add_members(session, group, new, actor, evaluation=reevaluation)
    return added, removed


def _membership_changed(session: Session, group: Group, user_ids: list[str], actor: Actor,
                        op: str, evaluation: Reevaluation) -> None:
    """One audit event and one outbox event per group and operation, listing the users."""
    _touch(group)
    past = "added" if op == "add" else "removed"
    data = {"group_id": group.id, "user_ids": user_ids}
    record(session, organization_id=group.organization_id, action=f"membership:{op}",
           actor=actor, subject_type="group", subject_id=group.id, data=data)
    emit(session, organization_id=group.organization_id, type=f"membership.{past}",
         aggregate_id=group.id, payload=data)
    evaluation.note(user_ids)


def create_group(session: Session, directory: DirectoryLike, data: GroupInput,
                 actor: Actor) -> Group:
    """Create a group with its initial members (RFC 7644 §3.3)."""
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
    if data.member_ids:
        add_members(session, group, data.member_ids, actor)
        group.version, group.updated_at = 1, group.created_at
    return group


def update_group(session: Session, group: Group, data: GroupInput, actor: Actor) -> Group:
    """Set displayName, externalId, extensions and (if given) the full member list."""
    renamed = data.display_name != group.display_name
    replacing = data.member_ids is not None
    current = _member_set(session, group) if renamed or replacing else set()
    wanted = _unique(data.member_ids or ())
    # A rename re-evaluates every member, old and new; a member change only the difference,
    # which is locked whatever the policy (``add_members``).
    changing = current.symmetric_difference(wanted) if replacing else set()
    affected = current | set(wanted) if renamed else changing
    # Locked whatever the policy: a rename changes every member's ``groups`` (its version).
    reevaluation = lock_users(session, group.organization_id, affected, affected)
    _update(session, group, data, actor, reevaluation, current)
    if replacing:
        _replace(session, group, wanted, current, actor, reevaluation)
    _finish(session, reevaluation, actor)
    return group


class MemberEdit(Protocol):
    """One PATCH operation on members: add, remove, replace with ``ids``, or remove_all."""

    @property
    def op(self) -> str: ...

    @property
    def ids(self) -> Sequence[str]: ...


def _apply_edit(session: Session, group: Group, change: MemberEdit, actor: Actor,
                reevaluation: Reevaluation) -> None:
    """One membership operation on the rows it names, under the caller's re-evaluation."""
    if change.op == "add":
        add_members(session, group, change.ids, actor, evaluation=reevaluation)
    elif change.op == "remove":
        remove_members(session, group, change.ids, actor, evaluation=reevaluation)
    elif change.op == "replace":
        replace_members(session, group, change.ids, actor, evaluation=reevaluation)
    else:
        remove_all_members(session, group, actor, evaluation=reevaluation)


def edit_group(session: Session, group: Group, data: GroupInput | None,
               changes: Sequence[MemberEdit], actor: Actor) -> Group:
    """PATCH (RFC 7644 §3.5.2): ``data`` (members ignored), then each membership operation
    in order on the rows it names; every user any of them may re-evaluate is locked first."""
    renamed = data is not None and data.display_name != group.display_name
    emptying = any(c.op in ("replace", "remove_all") for c in changes)
    current = _member_set(session, group) if renamed or emptying else set()
    named = {i for c in changes for i in c.ids}
    # Locked whatever the policy: every user whose membership an operation may change, and
    # on a rename every member (its ``groups`` changes, so its version moves).
    reevaluation = lock_users(session, group.organization_id, current | named, current | named)
    if data is not None:
        _update(session, group, data, actor, reevaluation, current)
    for change in changes:
        _apply_edit(session, group, change, actor, reevaluation)
    _finish(session, reevaluation, actor)
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
        _touch(group)
        _flush_unique(session, group.display_name)
        record(session, organization_id=group.organization_id, action="group:update",
               actor=actor, subject_type="group", subject_id=group.id,
               data={"changed": changed, "displayName": group.display_name})
        emit(session, organization_id=group.organization_id, type="group.updated",
             aggregate_id=group.id, payload={"group_id": group.id, "changed": changed,
                                             "display_name": group.display_name})
        if "displayName" in changed:
            reevaluation.note(members)


def delete_group(session: Session, group: Group, actor: Actor) -> None:
    """Delete a group and its memberships (RFC 7644 §3.6); members are re-evaluated."""
    member_ids = list(_member_set(session, group))
    with _reevaluating(session, group, member_ids, actor, None) as reevaluation:
        session.execute(delete(Membership).where(Membership.group_id == group.id))
        record(session, organization_id=group.organization_id, action="group:delete",
               actor=actor, subject_type="group", subject_id=group.id,
               data={"displayName": group.display_name, "members": len(member_ids)})
        emit(session, organization_id=group.organization_id, type="group.deleted",
             aggregate_id=group.id, payload={"group_id": group.id,
                                             "display_name": group.display_name})
        session.delete(group)
        session.flush()
        reevaluation.note(member_ids)
