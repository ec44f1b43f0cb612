"""Mass-event guard: many deprovisionings from one directory in a short window form a batch.

Access removal is never delayed (security first); the guard alerts and makes the batch
undoable in one command when it was an IdP misconfiguration.

The guard runs when the deprovisioning's transaction commits, under a per-directory lock
(PostgreSQL advisory transaction lock; SQLite has one writer at a time anyway), so that the
parallel requests of one burst decide one after the other: one batch, one alert, every
deprovisioning counted (audit finding F2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, bindparam, event, func, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from app.audit import SYSTEM, record
from app.audit.sealed_records import seal_stamps
from app.events import emit
from app.lifecycle.policy import LifecyclePolicy
from app.models import User
from app.models.lifecycle import DeprovisionBatch, DeprovisionRecord

# An operator's deprovisioning is deliberate (a compromised account the IdP still has
# active): it is no sign of an IdP misconfiguration, so it neither counts nor joins a batch,
# and no batch restore gives the account back its access.
DELIBERATE = "operator"
# Built once: constructing a select costs more than running it on SQLite.
_IN_WINDOW = select(func.count()).select_from(DeprovisionRecord).where(
    DeprovisionRecord.directory_id == bindparam("b_directory"),
    DeprovisionRecord.received_at >= bindparam("b_since"),
    DeprovisionRecord.restored_at.is_(None), DeprovisionRecord.outcome == "applied",
    DeprovisionRecord.trigger != DELIBERATE)
_DIRECTORY_USERS = select(func.count()).select_from(User).where(
    User.directory_id == bindparam("b_directory"))
# populate_existing: under the lock the committed row is the truth, not an object this
# session loaded earlier.
_OPEN_BATCH = (select(DeprovisionBatch)
               .where(DeprovisionBatch.directory_id == bindparam("b_directory"),
                      DeprovisionBatch.restored_at.is_(None),
                      DeprovisionBatch.last_at >= bindparam("b_since"))
               .order_by(DeprovisionBatch.opened_at.desc()).limit(1)
               .execution_options(populate_existing=True))
# One atomic increment (no read-modify-write); a batch restored meanwhile is not joined.
_BATCHES = DeprovisionBatch.__table__
_JOIN = (update(_BATCHES)
         .where(_BATCHES.c.id == bindparam("b_batch"), _BATCHES.c.restored_at.is_(None))
         .values(count=_BATCHES.c.count + 1, last_at=bindparam("b_last")))
# Every unbatched deprovisioning of the window goes into a batch being opened.
_RECORDS = DeprovisionRecord.__table__
_TAKE = (update(_RECORDS)
         .where(_RECORDS.c.directory_id == bindparam("b_directory"),
                _RECORDS.c.received_at >= bindparam("b_since"),
                _RECORDS.c.batch_id.is_(None), _RECORDS.c.restored_at.is_(None),
                _RECORDS.c.outcome == "applied", _RECORDS.c.trigger != DELIBERATE)
         .values(batch_id=bindparam("b_batch")).returning(_RECORDS.c.id))
_LOCK = select(func.pg_advisory_xact_lock(bindparam("b_key", type_=BigInteger)))

# session.info key: (record, policy) of this transaction's deprovisionings, guarded at commit.
_PENDING = "roster.lifecycle.guard_pending"
# session.info key: organization -> record id -> {"batch_id": ...} given by this guard run.
_SEALS = "roster.lifecycle.guard_seals"


def guard_on_commit(session: Session, rec: DeprovisionRecord,
                    policy: LifecyclePolicy) -> None:
    """Queue a deprovisioning for the mass-event guard, which runs as its transaction commits
    (an operator's is not guarded: ``DELIBERATE``)."""
    if rec.directory_id is not None and rec.trigger != DELIBERATE:
        session.info.setdefault(_PENDING, []).append((rec, policy))


# insert=True: ahead of app.audit's before_commit listener, which appends the audit events
# recorded until then (the guard records directory:mass_deprovision) under the chain head's
# lock; so the chain head is locked after the directory, as the lock order below requires.
@event.listens_for(Session, "before_commit", insert=True)
def _guard_at_commit(session: Session) -> None:
    # A savepoint's commit hands its records on to the enclosing transaction.
    if not session.in_nested_transaction():
        run_pending_guards(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: Any) -> None:
    # The whole transaction is over: what it did not guard (it rolled back) is gone.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def run_pending_guards(session: Session) -> None:
    """Lock the directories of this transaction's deprovisionings, then guard each in order.

    Lock order (why this cannot deadlock): a transaction takes its user rows (FOR NO KEY
    UPDATE, or the UPDATE of a deprovisioning) while the request runs, its directory locks
    here at commit (after the flush below, in key order), and the audit chain heads last
    (app.audit's before_commit listener runs after this one). So a transaction holding a
    directory lock never waits for a user row, even when it deprovisions many users (a
    disabled directory, a mapping change over 500+ users), where a guard locking inline
    would hold the directory while taking the next user's row. Under the lock only
    deprovisioning records and batches are written; other transactions write those rows
    only to stamp (after their commit) or restore them.
    """
    pending: list[tuple[DeprovisionRecord, LifecyclePolicy]] | None = \
        session.info.pop(_PENDING, None)
    # A savepoint rolled back expunged the records made inside it: nothing to guard there.
    live = [(rec, policy) for rec, policy in pending or () if rec in session]
    if not live:
        return
    session.flush()  # user rows are locked by now, and the records are visible to the counts
    _lock_directories(session, {rec.directory_id for rec, _ in live if rec.directory_id})
    for rec, policy in live:
        if rec.batch_id is None:  # a batch opened for an earlier record may have taken it
            guard_mass_event(session, rec, policy)
    # The records' batch_id, written here (earlier records' too), sealed in the chain
    # (app/audit/sealed_records.py), before the audit listener appends this commit's events.
    for organization_id, stamps in sorted(session.info.pop(_SEALS, {}).items()):
        seal_stamps(session, organization_id, stamps)


def _note_batch(session: Session, organization_id: str, record_ids: Iterable[str],
                batch_id: str) -> None:
    """Remember the records given ``batch_id`` here, for their seal at the guard's end."""
    stamps = session.info.setdefault(_SEALS, {}).setdefault(organization_id, {})
    stamps.update({record_id: {"batch_id": batch_id} for record_id in record_ids})


def _lock_directories(session: Session, directory_ids: Iterable[str]) -> None:
    """Hold each directory's guard lock until the transaction ends (PostgreSQL only)."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        return  # SQLite: this transaction already holds the database's only write lock
    for key in sorted({_lock_key(directory_id) for directory_id in directory_ids}):
        connection.execute(_LOCK, {"b_key": key})


def _lock_key(directory_id: str) -> int:
    """The directory's advisory-lock key: a signed 64-bit hash in the guard's own namespace."""
    digest = hashlib.blake2b(directory_id.encode(), digest_size=8, person=b"roster.guard")
    return int.from_bytes(digest.digest(), "big", signed=True)


def guard_mass_event(session: Session, rec: DeprovisionRecord,
                     policy: LifecyclePolicy) -> DeprovisionBatch | None:
    """Join the directory's open batch, or open one when the window's count passes a limit.

    The caller holds the directory's guard lock (``run_pending_guards``): every earlier
    deprovisioning of the directory has committed, so the counts below see them all.
    """
    if rec.directory_id is None:
        return None
    since = rec.received_at - timedelta(seconds=policy.mass_window_seconds)
    batch = session.scalars(_OPEN_BATCH, {"b_directory": rec.directory_id,
                                          "b_since": since}).first()
    if batch is not None and _join(session, batch, rec):
        return batch
    count = session.scalar(_IN_WINDOW, {"b_directory": rec.directory_id, "b_since": since}) or 0
    if count < policy.mass_min_count:
        return None  # ordinary churn: the directory's size is not even needed
    total = session.scalar(_DIRECTORY_USERS, {"b_directory": rec.directory_id}) or 0
    if count < policy.mass_count and count * 100 <= total * policy.mass_share_percent:
        return None
    return _open_batch(session, rec, total, since, policy)


def _join(session: Session, batch: DeprovisionBatch, rec: DeprovisionRecord) -> bool:
    """Add the record to the batch with an atomic increment; False if it was just restored."""
    last = max(batch.last_at, rec.received_at)
    joined = session.connection().execute(_JOIN, {"b_batch": batch.id, "b_last": last})
    if joined.rowcount != 1:
        return False
    rec.batch_id = batch.id
    _note_batch(session, rec.organization_id, [rec.id], batch.id)
    session.expire(batch, ["count", "last_at"])  # changed in the database, not on the object
    return True


def _open_batch(session: Session, rec: DeprovisionRecord, total: int, since: datetime,
                policy: LifecyclePolicy) -> DeprovisionBatch:
    """Open a batch holding every unbatched deprovisioning of the window, and alert once."""
    batch = DeprovisionBatch(organization_id=rec.organization_id, directory_id=rec.directory_id,
                             opened_at=rec.received_at, last_at=rec.received_at, count=0,
                             directory_users=total)
    session.add(batch)
    session.flush()
    taken = set(session.connection().execute(_TAKE, {
        "b_batch": batch.id, "b_directory": rec.directory_id, "b_since": since}).scalars())
    # This transaction's own records learn their batch too (so none joins it a second time).
    for obj in list(session.identity_map.values()):
        if isinstance(obj, DeprovisionRecord) and obj.id in taken:
            set_committed_value(obj, "batch_id", batch.id)
    _note_batch(session, rec.organization_id, sorted(taken), batch.id)
    # The batch counts the records it holds, so that count and restore agree.
    batch.count = count = len(taken)
    data = {"batch_id": batch.id, "directory_id": rec.directory_id, "count": count,
            "directory_users": total, "window_seconds": policy.mass_window_seconds,
            "restore_command": f"roster lifecycle restore --batch {batch.id}"}
    record(session, organization_id=rec.organization_id, action="directory:mass_deprovision",
           actor=SYSTEM, subject_type="directory", subject_id=rec.directory_id, data=data)
    emit(session, organization_id=rec.organization_id, type="directory.mass_deprovision",
         aggregate_id=rec.directory_id, payload=data)
    return batch
