"""Step 0 of the lock order (app/mapping/reevaluation.py): a directory's row, held FOR SHARE.

A write that may leave a user active in a directory (a SCIM write, an SSO login through a
connection bound to it, an operator's reactivation) holds the directory's row FOR SHARE for
its transaction, before the organization's mapping lock and any user row; an enable or
disable holds it FOR NO KEY UPDATE, which conflicts with that (and not with the FOR KEY
SHARE of a foreign key check). Kept apart from ``app.directory.directories`` (which imports
the lifecycle) so the lifecycle can hold a directory too.
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.models import Directory
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


def directory_active(status: DirectoryStatus | None) -> bool:
    """Whether a status read by ``hold_directory_status`` is an active directory's."""
    return status == DirectoryStatus.active
