"""userName uniqueness between live and soft-deleted users (RFC 7643 §4.1.1, RFC 7644 §3.3).

A soft-deleted user keeps its row (audit, retention, Entra's restore by re-creation) but not
its userName: when a new user takes the name, the deleted holder becomes ``<id>.deleted``
and keeps the name it gave up in ``released_user_name``. A reactivation takes the name back
when no live user holds it, and fails without a change when one does.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.util import identity_key

from app.db import core
from app.errors import Conflict
from app.models import User
from app.sql import fetch, fold

_USERS = User.__table__
# Matches the functional unique index uq_users_directory_username.
_NAME_HOLDER = select(User.id, User.deleted_at).where(
    User.directory_id == bindparam("directory_id"),
    fold(User.user_name) == fold(bindparam("name")))
# Renames a deleted holder only while it is deleted and holds the name (_rename_tombstone).
# The SET's right-hand sides read the row as it was: the name given up is kept.
_RENAME_TOMBSTONE = (
    update(_USERS)
    .where(User.id == bindparam("b_id"), User.deleted_at.is_not(None),
           fold(User.user_name) == fold(bindparam("b_name")))
    .values(user_name=bindparam("b_new"), released_user_name=_USERS.c.user_name))
# A lost race on a tombstone is re-read; more than this many in one request is a Conflict.
_FREE_ATTEMPTS = 3


def taken(user_name: str) -> str:
    """The Conflict detail for a userName a live user of the directory holds."""
    return f"userName {user_name!r} is already taken in this directory"


def placeholder(user_id: str) -> str:
    """The userName of a deleted user that gave its own up."""
    return f"{user_id}.deleted"


def free_user_name(session: Session, directory_id: str, user_name: str,
                   except_id: str | None) -> None:
    """Raise Conflict when a live user holds ``user_name``; a deleted holder gives it up."""
    params = {"directory_id": directory_id, "name": user_name}
    for _ in range(_FREE_ATTEMPTS):
        found = fetch(core(session), _NAME_HOLDER, params)
        holder = found[0] if found else None
        if holder is None or holder.id == except_id:
            return
        if holder.deleted_at is None:
            raise Conflict(taken(user_name), field="userName")
        if _rename_tombstone(session, holder.id, user_name):
            return
        # Nothing renamed: the row changed in a transaction that committed while this one
        # waited for its lock (a restore took it back, a create or purge got there first).
        # Under READ COMMITTED the next read sees what that transaction left.
    raise Conflict(taken(user_name), field="userName")


def reclaim_user_name(session: Session, user: User) -> None:
    """Give a deleted user being reactivated the userName it gave up, if it gave one up.

    Conflict (nothing changed) when a live user of the directory holds that name now: two
    live users never share a userName, and which one keeps it is the IdP's call. A name
    set since (Entra's restore applies the posted userName first) is left as it is.
    """
    name = user.released_user_name
    if name is None:
        return
    if user.user_name == placeholder(user.id):
        try:
            free_user_name(session, user.directory_id, name, user.id)
        except Conflict as exc:
            raise Conflict(f"user {user.id} cannot be reactivated: its userName {name!r} "
                           "belongs to another user of the directory now; rename or delete "
                           "that user in the IdP first", field="userName") from exc
        user.user_name = name
    user.released_user_name = None


def _rename_tombstone(session: Session, user_id: str, user_name: str) -> bool:
    """Rename the deleted user ``user_id`` away from ``user_name``, if it still is both."""
    # The name was read without a lock: a restore (find_restorable) may hold this row and
    # bring it back. The UPDATE waits for that lock and, on PostgreSQL, re-checks its WHERE
    # on the row as committed, so a restored (live) user or one renamed already is left
    # alone (0 rows). SQLite runs one writer at a time, so the row is as read. Run now
    # rather than at the flush, which orders UPDATEs by primary key: the new holder could
    # take the name first.
    # Lock order: a write gets here holding at most its API token's row (touched first by
    # every write) and its own user's (FOR NO KEY UPDATE: PUT/PATCH, or find_restorable),
    # and waits only for a *deleted* user's row; the audit chain head is locked at COMMIT,
    # after every row lock, so no cycle runs through it. A cycle needs two deleted users
    # restored at once, each under the other's current name: PostgreSQL breaks it (503,
    # retried), as it did before this check.
    renamed = core(session).execute(_RENAME_TOMBSTONE, {
        "b_id": user_id, "b_name": user_name, "b_new": placeholder(user_id)}).rowcount
    loaded = session.identity_map.get(identity_key(User, user_id))
    if loaded is not None:  # the session's copy (if any) must not keep the old name
        session.expire(loaded, ["user_name", "released_user_name"])
    return renamed == 1
