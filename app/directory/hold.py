"""Rows held FOR SHARE in the lock order (app/mapping/reevaluation.py): a directory's row
(step 0) and a user's (step 3).

A write that may leave a user active in a directory (a SCIM write, an SSO login through a
connection bound to it, an operator's reactivation) holds the directory's row FOR SHARE for
its transaction, before the organization's mapping lock and any user row; an enable or
disable holds it FOR NO KEY UPDATE, which conflicts with that (and not with the FOR KEY
SHARE of a foreign key check). Kept apart from ``app.directory.directories`` (which imports
the lifecycle) so the lifecycle can hold a directory too.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, bindparam, select
from sqlalchemy.orm import Session

from app.models import Directory, User
from app.models.directory import DirectoryStatus

_STATUS = select(Directory.status).where(Directory.id == bindparam("b_id"))
_STATUS_SHARE = _STATUS.with_for_update(read=True)


def hold_directory_status(session: Session, directory_id: str) -> DirectoryStatus | None:
    """The directory's status now (None: no such directory), held until this transaction
    ends: no enable or disable commits meanwhile.

    PostgreSQL: one ``FOR SHARE`` statement, which waits for an enable or disable in flight
    and then reads its outcome (READ COMMITTED reads the row's latest version), and makes a
    later one wait for this transaction before it lists the users to deprovision. SQLite: a
    plain read; a write transaction holds the single write lock, so none commits meanwhile.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    status: DirectoryStatus | None = session.execute(
        _STATUS_SHARE if postgres else _STATUS, {"b_id": directory_id}).scalar()
    return status


def hold_directory_status_trying(session: Session, directory_id: str,
                                 tried: ColumnElement[bool]) -> tuple[DirectoryStatus | None,
                                                                      bool]:
    """PostgreSQL: :func:`hold_directory_status` and ``tried`` in one statement (one round
    trip): the row is locked in a ``MATERIALIZED`` CTE, so ``tried`` (the try of the
    organization's mapping lock: app/mapping/locks.py try_shared_column) is evaluated for
    the row it returned, held, after any enable or disable in flight: the directory first,
    as the lock order wants. No such directory: (None, False), nothing tried."""
    held = _STATUS_SHARE.cte("held").prefix_with("MATERIALIZED")
    row = session.execute(select(held.c.status, tried), {"b_id": directory_id}).first()
    return (None, False) if row is None else (row[0], bool(row[1]))


def directory_active(status: DirectoryStatus | None) -> bool:
    """Whether a status read by ``hold_directory_status`` is an active directory's."""
    return status == DirectoryStatus.active


# FOR SHARE: conflicts with the FOR NO KEY UPDATE every deprovisioning holds on the user
# before it revokes (not with the KEY SHARE of a foreign key check); populate_existing: the
# status as committed when the lock was granted, not as first read.
_USER_SHARE = (select(User).where(User.id == bindparam("b_id")).with_for_update(read=True)
               .execution_options(populate_existing=True))


def hold_user(session: Session, user_id: str) -> User | None:
    """The user (None: no such user), its row held until this transaction ends and its
    status read under the lock, before a session or token is issued to it.

    A deprovisioning revokes the sessions and tokens it can see, by UPDATEs that cannot see
    rows another transaction inserted and has not committed. Held so (PostgreSQL), a
    deprovisioning in flight makes this transaction wait and then read the user out, and a
    later one waits for this commit and then revokes what it issued. SQLite has one writer.
    """
    if session.get_bind().dialect.name == "postgresql":
        return session.scalars(_USER_SHARE, {"b_id": user_id}).first()
    return session.get(User, user_id)


# FOR NO KEY UPDATE, as a write locks users everywhere (app/mapping/reevaluation.py, step 3).
_USER_WRITE = (select(User).where(User.id == bindparam("b_id")).with_for_update(key_share=True)
               .execution_options(populate_existing=True))


def hold_user_for_write(session: Session, user_id: str) -> User | None:
    """The user (None: no such user), its row locked for a write of this transaction and
    its state read under the lock, not as first read.

    A write that read the user before a deprovisioning committed (an SSO JIT login finds
    its user unlocked) would otherwise judge the stale copy: the mapping gave a user taken
    out meanwhile its grants back. Locked so (PostgreSQL), a deprovisioning in flight makes
    the write wait and then read the user out. SQLite has one writer."""
    if session.get_bind().dialect.name == "postgresql":
        return session.scalars(_USER_WRITE, {"b_id": user_id}).first()
    return session.get(User, user_id)
