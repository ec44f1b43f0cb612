"""SCIM group memberships (RFC 7643 §4.2 ``members``): add, remove, replace and empty,
on the rows they name, and the end of a group write (re-evaluation, versions).

Membership changes touch only the rows they name: adding one member to a 50,000-member
group reads and writes that one row, never the other 49,999. The users whose memberships
change are locked in one statement sorted by id before any membership changes, and a user
to add is checked live under that lock (the lock order is in app/mapping/reevaluation.py).
The groups themselves (create, update, PATCH, delete, reads) are app/directory/groups.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

from sqlalchemy import bindparam, delete, insert, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import core, utcnow
from app.directory.versions import move_group, move_groups_shown, own_moved_among
from app.errors import InvalidInput
from app.events import emit
from app.mapping.reevaluation import Reevaluation, finish, lock_users
from app.models import Group, Membership, User
from app.sql import among, fetch


def unique_ids(ids: Iterable[str]) -> list[str]:
    """The ids once each, in their first order."""
    return list(dict.fromkeys(ids))


# Statements built once: constructing a select costs more than running it on SQLite.
_LIVE_USER_IDS = select(User.id).where(among(User.id), User.directory_id == bindparam(
    "directory_id"), User.deleted_at.is_(None))
_PRESENT_MEMBERS = select(Membership.user_id).where(
    Membership.group_id == bindparam("group_id"), among(Membership.user_id))
# The same with whether each is shown (its user not deleted): what a removal announces.
_PRESENT_SHOWN = (select(Membership.user_id, User.deleted_at.is_(None))
                  .join(User, User.id == Membership.user_id)
                  .where(Membership.group_id == bindparam("group_id"),
                         among(Membership.user_id)))
_REMOVE_MEMBERS = delete(Membership).where(Membership.group_id == bindparam("group_id"),
                                           among(Membership.user_id))


def _live_users(session: Session, directory_id: str, ids: list[str]) -> None:
    """Every id must be a live user of the same directory (RFC 7643 §4.2 members.value)."""
    found = {row[0] for row in fetch(core(session), _LIVE_USER_IDS, {
        "ids": ids, "directory_id": directory_id})}
    missing = [i for i in ids if i not in found]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InvalidInput(f"members must be users of this directory; unknown: {shown}",
                           field="members")


def touch(session: Session, group: Group) -> None:
    """The group changed: its version (the SCIM ETag, RFC 7644 §3.14) moves, once per
    transaction however many steps change it."""
    move_group(session, group)
    group.updated_at = utcnow()


def _members_among(session: Session, group: Group, ids: list[str]) -> list[str]:
    """Which of ``ids`` are members of ``group`` (only those rows are read)."""
    if not ids:
        return []
    return [row[0] for row in fetch(core(session), _PRESENT_MEMBERS,
                                     {"ids": ids, "group_id": group.id})]


@contextmanager
def reevaluating(session: Session, group: Group, user_ids: Iterable[str], actor: Actor,
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
    finish_write(session, own, actor)


def finish_write(session: Session, reevaluation: Reevaluation, actor: Actor) -> None:
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
    ids = unique_ids(user_ids)
    if not ids:
        return []
    present = set(_members_among(session, group, ids))
    added = [i for i in ids if i not in present]
    if not added:
        _live_users(session, group.directory_id, ids)
        return []
    with reevaluating(session, group, added, actor, evaluation) as reevaluation:
        _live_users(session, group.directory_id, ids)
        now = utcnow()
        session.execute(insert(Membership), [
            {"group_id": group.id, "user_id": uid, "created_at": now} for uid in added])
        _membership_changed(session, group, added, actor, "add", reevaluation)
    return added


def remove_members(session: Session, group: Group, user_ids: Iterable[str], actor: Actor, *,
                   evaluation: Reevaluation | None = None) -> list[str]:
    """Remove the named members only (RFC 7644 §3.5.2.2); returns those that were members."""
    ids = unique_ids(user_ids)
    present = (dict(fetch(core(session), _PRESENT_SHOWN, {"ids": ids, "group_id": group.id}))
               if ids else {})
    removed = [i for i in ids if i in present]
    if removed:
        with reevaluating(session, group, removed, actor, evaluation) as reevaluation:
            fetch(core(session), _REMOVE_MEMBERS, {"ids": removed, "group_id": group.id})
            _membership_changed(session, group, removed, actor, "remove", reevaluation,
                                shown=[i for i in removed if present[i]])
    return removed


_MEMBERS_LIVE = (select(Membership.user_id, User.deleted_at.is_(None))
                 .join(User, User.id == Membership.user_id)
                 .where(Membership.group_id == bindparam("group_id")))


def member_liveness(session: Session, group: Group) -> dict[str, bool]:
    """Every member's user id, and whether it is shown (its user not deleted): a full
    replace reads them once, for the difference and for its answer."""
    return {uid: bool(live) for uid, live in fetch(core(session), _MEMBERS_LIVE,
                                                  {"group_id": group.id})}


def member_set(session: Session, group: Group) -> set[str]:
    """Every member's user id (a rename, a full replace or an emptying needs them all)."""
    return set(session.scalars(select(Membership.user_id)
                               .where(Membership.group_id == group.id)))


def remove_all_members(session: Session, group: Group, actor: Actor, *,
                       evaluation: Reevaluation | None = None) -> list[str]:
    """Empty the group (PATCH remove of ``members`` without a filter, RFC 7644 §3.5.2.2)."""
    members = member_liveness(session, group)
    if members:
        with reevaluating(session, group, members, actor, evaluation) as reevaluation:
            drop_members(session, group, members, actor, reevaluation)
    return sorted(members)


def drop_members(session: Session, group: Group, members: dict[str, bool], actor: Actor,
                 evaluation: Reevaluation) -> None:
    """Delete every membership row of ``group``, whose ``members`` (``member_liveness``)
    the caller read and locked: one ``membership:remove`` naming them all and one
    ``membership.removed`` naming the shown ones (an emptying PATCH, and a group's DELETE,
    so that each member's history shows it left)."""
    if members:
        session.execute(delete(Membership).where(Membership.group_id == group.id))
        _membership_changed(session, group, sorted(members), actor, "remove", evaluation,
                            shown=sorted(uid for uid, live in members.items() if live))


def replace_members(session: Session, group: Group, user_ids: Iterable[str], actor: Actor, *,
                    evaluation: Reevaluation | None = None) -> tuple[list[str], list[str]]:
    """Make the members exactly ``user_ids`` (PUT, PATCH replace); returns (added, removed)."""
    return replace_among(session, group, unique_ids(user_ids), member_set(session, group), actor,
                    evaluation)


def replace_among(session: Session, group: Group, wanted: list[str], current: set[str],
                  actor: Actor, evaluation: Reevaluation | None) -> tuple[list[str], list[str]]:
    """Make the members ``wanted`` given the ``current`` ones; (added, removed)."""
    wanted_set = set(wanted)
    gone = [i for i in current if i not in wanted_set]
    new = [i for i in wanted if i not in current]
    # Both passes under one lock of all their users: locking the removed ones, then the
    # added ones, is what let two PUTs sharing users deadlock (audit F4).
    with reevaluating(session, group, gone + new, actor, evaluation) as reevaluation:
        removed = remove_members(session, group, gone, actor, evaluation=reevaluation)
        added = add_members(session, group, new, actor, evaluation=reevaluation)
    return added, removed


def _membership_changed(session: Session, group: Group, user_ids: list[str], actor: Actor,
                        op: str, evaluation: Reevaluation,
                        shown: list[str] | None = None) -> None:
    """One audit event and one outbox event per group and operation, listing the users.

    ``shown``: those of ``user_ids`` the portal sees leave (all when None). A SCIM-deleted
    user's membership is hidden, and its DELETE announced the removal already
    (app/lifecycle/visibility.py): dropping the row later is audited, not announced again."""
    touch(session, group)
    past = "added" if op == "add" else "removed"
    data = {"group_id": group.id, "user_ids": user_ids}
    record(session, organization_id=group.organization_id, action=f"membership:{op}",
           actor=actor, subject_type="group", subject_id=group.id, data=data)
    announced = user_ids if shown is None else shown
    if announced:
        emit(session, organization_id=group.organization_id, type=f"membership.{past}",
             aggregate_id=group.id, payload={"group_id": group.id, "user_ids": announced})
    evaluation.note(user_ids)


class MemberEdit(Protocol):
    """One PATCH operation on members: add, remove, replace with ``ids``, or remove_all."""

    @property
    def op(self) -> str: ...

    @property
    def ids(self) -> Sequence[str]: ...


def apply_edit(session: Session, group: Group, change: MemberEdit, actor: Actor,
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
