"""The part of a resource's version that another resource's change moves (RFC 7644 §3.14).

A SCIM-deleted user vanishes from its groups' ``members`` and from its reports'
``manager``; a restore brings it back (app/lifecycle/visibility.py). The group and the
report change as SCIM shows them, so their ``meta.version`` (the ETag) and
``meta.lastModified`` must move, else a client's ``If-None-Match`` gets a 304 and keeps a
member list that still has the deleted user (RFC 9110 §8.8.3, §13.1.2). So must a user's
when a group write changes its read-only ``groups`` (RFC 7643 §4.1.2) or an evaluation
changes its grants (the read-only access extension, returned by default), and a group's
when a member's display changes its ``members.display``.

Writing the group's or the report's row would move them, but not in the lock order
(app/mapping/reevaluation.py): the delete holds the user's row (step 3), and a group's row
comes before it (step 2; a group PATCH holding the group and waiting for this user would
deadlock with it), and a report's row is another user's, locked alone after the first
(user rows are locked in id order, in one statement). So neither is written, and neither
version is stored whole: each is derived from what is written under locks already held.

- **A user**: its own ``version``, plus the sum of three counters. Its manager's
  ``shown_version`` (written on the manager's own row, which the manager's delete,
  restore and display change hold anyway): what a user shows of its manager, whether at
  all and its display (displayName, else userName). And its own ``groups_version``: how
  often a group write changed its ``groups`` without writing the user (added or removed
  it, renamed or deleted one of its groups). A group write locks every user whose
  membership it changes, and on a rename or a delete every member, after the group's row
  and in one sorted statement (step 3 of the lock order), so it bumps them under locks it
  holds: one ``UPDATE ... groups_version + 1`` for the users it changed, at its end
  (``move_groups_shown``; adding one member to a 50,000-member group writes that one row).
  The counter is the user's, but not ``version``: the user's own row did not change, and
  ``updated_at`` keeps saying when it did. And its own ``access_version``: how often its
  grants (the access extension: organization slug, unit name and path, role key) changed
  in a transaction that did not move its ``version`` nor its ``groups_version``: a rule-set
  apply or rule edit (API or ``roster mapping apply``), a unit added for a rule
  (app/mapping/new_units.py), an SSO login's evaluation. Every rule-made grant is written
  by app/mapping/evaluation.py ``run``, which locks each batch's users (FOR NO KEY UPDATE,
  in id order, in one statement) before it writes a grant, then bumps the batch's changed
  users in one ``UPDATE ... access_version + 1`` on those held rows: no lock is added, so
  the lock order (app/mapping/reevaluation.py) is unchanged. Users whose version the
  calling write moves anyway are ``settled`` and not bumped: a create (version 1 whatever
  its first grants), a user PUT or PATCH that changed the user, a reactivation, a group
  write (their ``groups_version``), so those paths run no extra statement. Grants written
  outside ``run`` (a deprovisioning removing them, a reactivation restoring manual ones)
  move the user's own ``version``. No operation renames or moves a unit, changes an
  organization's slug or a role's key, so nothing else changes what the extension shows.
  ``shown_at``, ``groups_at`` and ``access_at`` say when the parts moved, for the user's
  lastModified (the latest of the four).
- **A group**: its own ``version``, plus ``group_member_versions.version``: how often its
  live members changed without a write to the group (a member's SCIM delete or restore,
  and a change of a member's display, its ``members.display``). That row is the group's,
  but not the group's row: a group write never locks it, so a member's write taking it
  cannot wait in a cycle with one. The member's write notes its user's groups (one indexed
  query, only when it hides, shows or renames the user); the rows are moved at COMMIT,
  after the audit chain head (app/audit/log.py, whose listener is registered first), in
  one statement in group id order: one organization's transactions hold its chain head one
  at a time, so none ever waits for another's counter row, and a batch restoring several
  users (one transaction) moves each group once, in order.

Each derived version is a pair (own, other) where each part only ever grows and every change
of what the resource shows moves one of them (a user's other part is a sum of three growing
counters, so it grows with any): no pair is ever shown for two different states, and
while the other part is 0 the version is the plain ``n`` it always was. Reading them is no
query for a user's groups and access parts (its own row), and one indexed lookup per
resource, or one query per list page, for the rest: the members of a group are never read
for its version (a group of 50,000 members costs the same as one of 5).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, event, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

import app.audit.log  # noqa: F401  its before_commit listener first (the module docstring)
from app.db import Reader, core, utcnow
from app.models import Group, GroupMemberVersion, Membership, User
from app.sql import among, fetch


@dataclass(frozen=True)
class Moved:
    """The other part of a version: how often it moved (0: never), and when last."""

    version: int = 0
    at: datetime | None = None


NEVER = Moved()

_GROUP_MARKS = select(GroupMemberVersion.group_id, GroupMemberVersion.version,
                      GroupMemberVersion.changed_at).where(among(GroupMemberVersion.group_id))
# A manager as its reports show it: its display while it is live (None once deleted), and
# how often, and when last, that changed.
_SHOWN = select(User.id, func.coalesce(User.display_name, User.user_name),
                User.deleted_at.is_(None), User.shown_version, User.shown_at
                ).where(among(User.id))
_SHOWN_ONE = (select(User.shown_version, User.shown_at)
              .where(User.id == bindparam("user_id")))


def member_versions(session: Reader, group_ids: list[str]) -> dict[str, Moved]:
    """Each group's members' part (absent: never moved), in one query by primary key."""
    if not group_ids:
        return {}
    return {gid: Moved(version, at) for gid, version, at in
            fetch(core(session), _GROUP_MARKS, {"ids": list(group_ids)})}


@dataclass(frozen=True)
class Shown:
    """A manager as its reports show it: display (None: deleted, left out) and its part."""

    display: str | None
    moved: Moved


def shown_users(session: Reader, user_ids: list[str | None]) -> dict[str, Shown]:
    """Each user as a report shows it as its manager, deleted ones too, in one query."""
    ids = sorted({uid for uid in user_ids if uid})
    if not ids:
        return {}
    return {uid: Shown(display if live else None, Moved(version, at))
            for uid, display, live, version, at in fetch(core(session), _SHOWN, {"ids": ids})}


def shown_of(session: Reader, user_id: str | None) -> Moved:
    """One manager's part (a report's write checking If-Match): one lookup by key."""
    if not user_id:
        return NEVER
    found = fetch(core(session), _SHOWN_ONE, {"user_id": user_id})
    return Moved(*found[0]) if found else NEVER


def user_part(user: Any, manager: Moved | None) -> Moved | None:
    """A user's other part: what it shows of its manager (``manager``, None without one),
    of its groups (its own row's ``groups_version``) and of its access (``access_version``),
    summed; None while all are 0, so a user's version is its plain ``n`` as before. Each
    counter only grows and each change moves one of them: the sum strictly grows with
    every change of any."""
    parts = [part for part in (manager, Moved(user.groups_version or 0, user.groups_at),
                               Moved(user.access_version or 0, user.access_at))
             if part is not None and part.version]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    at = max((p.at for p in parts if p.at is not None), default=None)
    return Moved(sum(p.version for p in parts), at)


_USERS = User.__table__
_MOVED = {"groups_version": _USERS.c.groups_version + 1, "groups_at": bindparam("now")}
# SQLite: the rows in table (rowid) order, the ids found through their index first. Driven
# by the id list (sorted by id, a random order of pages), the UPDATE of a 50,000-member
# group's users took twice as long: with the default 2 MB page cache, each page of the
# table is read and spilled again for each of its rows (bench/big_group_bench.py).
_ROWID = literal_column("rowid")
_MOVE_GROUPS = {
    "postgresql": update(_USERS).where(among(_USERS.c.id)).values(_MOVED),
    "sqlite": update(_USERS).where(_ROWID.in_(
        select(_ROWID).select_from(_USERS).where(among(_USERS.c.id)))).values(_MOVED),
}


def move_groups_shown(session: Session, user_ids: Iterable[str]) -> None:
    """What these users show of their groups changed (a group write added or removed
    them, renamed or deleted one of their groups): one UPDATE of their rows, which the
    group write holds already (``lock_users``), so no lock is taken out of order, and two
    group writes changing the same user each move it (``+ 1`` under the row lock)."""
    ids = sorted(set(user_ids))
    if not ids:
        return
    connection = session.connection()
    connection.execute(_MOVE_GROUPS[connection.dialect.name], {"ids": ids, "now": utcnow()})
    _expire_loaded(session, ids, ["groups_version", "groups_at"])


def _expire_loaded(session: Session, ids: list[str], names: list[str]) -> None:
    """Users this session loaded keep no stale count (a bulk request renders them later):
    looked up by key, or the other way round when the session holds fewer objects (an
    apply's session holds every user it evaluated; a rename names 50,000 members)."""
    if len(ids) <= len(session.identity_map):
        found = (session.identity_map.get(identity_key(User, user_id)) for user_id in ids)
    else:
        moved = set(ids)
        found = (held for held in list(session.identity_map.values())
                 if isinstance(held, User) and held.id in moved)
    for held in [held for held in found if held is not None]:
        session.expire(held, names)


_MOVE_ACCESS = (update(User.__table__).where(among(User.__table__.c.id))
                .values(access_version=User.__table__.c.access_version + 1,
                        access_at=bindparam("now")))


def move_access_shown(session: Session, user_ids: Iterable[str]) -> None:
    """What these users show of their access (the access extension's ``grants``) changed
    in a transaction that does not move their own ``version``: one UPDATE of their rows,
    which the evaluation that changed the grants holds already (``diff_batch`` locks each
    batch FOR NO KEY UPDATE, in id order, before it writes a grant), so it waits for no
    lock; ``+ 1`` under the row lock: two transactions changing a user's grants each move it."""
    ids = sorted(set(user_ids))
    if not ids:
        return
    session.connection().execute(_MOVE_ACCESS, {"ids": ids, "now": utcnow()})
    _expire_loaded(session, ids, ["access_version", "access_at"])


# session.info key: (the root transaction, {user id: the version it moved the user to}).
_OWN_MOVED = "roster.own_versions_moved"


# The same for groups: {group id: the version this transaction moved the group to}.
_GROUP_MOVED = "roster.group_versions_moved"


def _own_moved(session: Session, key: str = _OWN_MOVED) -> dict[str, int]:
    transaction = session.get_transaction()
    held = session.info.get(key)
    if held is None or held[0] is not transaction:
        held = session.info[key] = (transaction, {})
    return held[1]


def move_group(session: Session, group: Group) -> None:
    """Move the group's own ``version`` once per transaction, as ``move_own`` a user's: a
    PUT removing one member and adding another, or a PATCH renaming the group and changing
    its members, moved it once per step, skipping versions no client saw (RFC 7644 §3.14)."""
    moved = _own_moved(session, _GROUP_MOVED)
    if moved.get(group.id) != group.version:
        group.version += 1
        moved[group.id] = group.version


def move_own(session: Session, user: User) -> None:
    """Move the user's own ``version`` once per transaction, however many of its steps
    change what SCIM shows of it (RFC 7644 §3.14: a version per state a client can see). A
    PATCH whose new department makes the mapping deprovision the user moved it twice (the
    write, then the deprovisioning after the write's flush), skipping a version never shown.
    The version moved to is kept, not a flag: a savepoint rolled back undoes the move, and
    a later step then moves it again."""
    if not own_moved(session, user):
        user.version = (user.version or 1) + 1
        if user.id is not None:
            _own_moved(session)[user.id] = user.version


def own_moved(session: Session, user: User) -> bool:
    """Whether this transaction moved the user's own version (``move_own``) already."""
    return user.id is not None and _own_moved(session).get(user.id) == user.version


def own_moved_among(session: Session, user_ids: Iterable[str]) -> set[str]:
    """Those of ``user_ids`` whose own version this transaction moved (``move_own``)."""
    moved = _own_moved(session)
    if not moved:
        return set()  # the usual group write: nothing to look at among its 50,000 members
    # Only the few it moved are read, by key: one the evaluation flushed may have left the
    # identity map (held weakly), and its version must be read to tell whether a savepoint
    # rolled back undid the move.
    found = (session.get(User, uid) for uid in sorted({u for u in user_ids if u in moved}))
    return {user.id for user in found if user is not None and own_moved(session, user)}


def display_changed(user: User, display_name: Any, user_name: Any) -> bool:
    """Whether writing these names changes the user's display (displayName, else userName)."""
    return (display_name or user_name) != (user.display_name or user.user_name)


def move_shown(user: User) -> None:
    """What others show of ``user`` changed (its row is held by the caller's write)."""
    user.shown_version = (user.shown_version or 0) + 1
    user.shown_at = utcnow()


_GROUPS_OF = (select(Membership.group_id).where(Membership.user_id == bindparam("user_id"))
              .order_by(Membership.group_id))


def groups_of(session: Session, user_id: str) -> list[str]:
    """The ids of the groups ``user_id`` is a member of, in id order (one indexed query)."""
    return [row[0] for row in fetch(session.connection(), _GROUPS_OF, {"user_id": user_id})]


def move_display(session: Session, user: User) -> None:
    """``user``'s display (displayName, else userName) changes: its reports show it as
    their ``manager.displayName``, its groups as their ``members.display``; both parts
    move (its groups' at COMMIT), so If-None-Match on either gets the new name."""
    move_shown(user)
    move_member_versions(session, groups_of(session, user.id))


_NOTED = "roster.versions.groups"


def move_member_versions(session: Session, group_ids: list[str]) -> None:
    """These groups' live members changed without a write to the groups: their part moves
    at COMMIT (the module docstring says why then)."""
    if group_ids:
        session.info.setdefault(_NOTED, set()).update(group_ids)


def _upsert(insert: Any) -> Any:
    table = GroupMemberVersion.__table__
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["group_id"],
        set_={"version": table.c.version + 1, "changed_at": stmt.excluded.changed_at})


_UPSERT = {"postgresql": _upsert(pg_insert), "sqlite": _upsert(sqlite_insert)}


@event.listens_for(Session, "before_commit")
def _move_at_commit(session: Session) -> None:
    # A savepoint's commit leaves them to the enclosing transaction. One rolled back to
    # keeps its groups noted: a version that moves for nothing costs a client one refetch.
    if session.in_nested_transaction():
        return
    noted: set[str] | None = session.info.pop(_NOTED, None)
    if not noted:
        return
    connection = session.connection()
    now = utcnow()
    # Rows in group id order: PostgreSQL locks them in the order of the VALUES list.
    connection.execute(_UPSERT[connection.dialect.name].values(
        [{"group_id": gid, "version": 1, "changed_at": now} for gid in sorted(noted)]))


@event.listens_for(Session, "after_transaction_end")
def _forget(session: Session, transaction: Any) -> None:
    # The whole transaction is over (a rollback moved nothing).
    if transaction.parent is None:
        session.info.pop(_NOTED, None)
