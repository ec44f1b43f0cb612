"""Mass-event guard: many deprovisionings from one directory in a short window form a batch.

Access removal is never delayed (security first); the guard alerts and makes the batch
undoable in one command when it was an IdP misconfiguration.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from app.audit import SYSTEM, record
from app.events import emit
from app.lifecycle.policy import LifecyclePolicy
from app.models import User
from app.models.lifecycle import DeprovisionBatch, DeprovisionRecord

# Built once: constructing a select costs more than running it on SQLite.
_IN_WINDOW = select(func.count()).select_from(DeprovisionRecord).where(
    DeprovisionRecord.directory_id == bindparam("b_directory"),
    DeprovisionRecord.received_at >= bindparam("b_since"),
    DeprovisionRecord.restored_at.is_(None))
_DIRECTORY_USERS = select(func.count()).select_from(User).where(
    User.directory_id == bindparam("b_directory"))
_OPEN_BATCH = (select(DeprovisionBatch)
               .where(DeprovisionBatch.directory_id == bindparam("b_directory"),
                      DeprovisionBatch.restored_at.is_(None),
                      DeprovisionBatch.last_at >= bindparam("b_since"))
               .order_by(DeprovisionBatch.opened_at.desc()).limit(1))


def guard_mass_event(session: Session, rec: DeprovisionRecord,
                     policy: LifecyclePolicy) -> DeprovisionBatch | None:
    """Join the directory's open batch, or open one when the window's count passes a limit."""
    if rec.directory_id is None:
        return None
    since = rec.received_at - timedelta(seconds=policy.mass_window_seconds)
    batch = session.scalars(_OPEN_BATCH, {"b_directory": rec.directory_id,
                                          "b_since": since}).first()
    if batch is not None:
        rec.batch_id = batch.id
        batch.count += 1
        batch.last_at = max(batch.last_at, rec.received_at)
        return batch
    session.flush()
    count = session.scalar(_IN_WINDOW, {"b_directory": rec.directory_id, "b_since": since}) or 0
    if count < policy.mass_min_count:
        return None  # ordinary churn: the directory's size is not even needed
    total = session.scalar(_DIRECTORY_USERS, {"b_directory": rec.directory_id}) or 0
    if count < policy.mass_count and count * 100 <= total * policy.mass_share_percent:
        return None
    return _open_batch(session, rec, count, total, since, policy)


def _open_batch(session: Session, rec: DeprovisionRecord, count: int, total: int,
                since: object, policy: LifecyclePolicy) -> DeprovisionBatch:
    batch = DeprovisionBatch(organization_id=rec.organization_id, directory_id=rec.directory_id,
                             opened_at=rec.received_at, last_at=rec.received_at, count=count,
                             directory_users=total)
    session.add(batch)
    session.flush()
    session.execute(update(DeprovisionRecord).where(
        DeprovisionRecord.directory_id == rec.directory_id,
        DeprovisionRecord.received_at >= since, DeprovisionRecord.batch_id.is_(None),
        DeprovisionRecord.restored_at.is_(None)).values(batch_id=batch.id)
        .execution_options(synchronize_session="fetch"))
    data = {"batch_id": batch.id, "directory_id": rec.directory_id, "count": count,
            "directory_users": total, "window_seconds": policy.mass_window_seconds,
            "restore_command": f"roster lifecycle restore --batch {batch.id}"}
    record(session, organization_id=rec.organization_id, action="directory:mass_deprovision",
           actor=SYSTEM, subject_type="directory", subject_id=rec.directory_id, data=data)
    emit(session, organization_id=rec.organization_id, type="directory.mass_deprovision",
         aggregate_id=rec.directory_id, payload=data)
    return batch
