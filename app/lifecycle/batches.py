"""Undo a mass-deprovisioning batch, and purge soft-deleted users after retention.

Lock order of the purge (``purge_deleted``, PostgreSQL; the write transactions' order is
in app/mapping/reevaluation.py, which a batch restore follows): the purge never waits for
a user's row, so it never closes a cycle of waits with a SCIM write, a rename or a purge.

1. its users, in id order, ``FOR UPDATE SKIP LOCKED``: a user another transaction holds
   (a reactivation, a group write locking its members, another worker's purge) is left for
   the next run;
2. their reports (users naming them as manager, whose version moves when the manager
   goes), in id order, ``FOR NO KEY UPDATE SKIP LOCKED``: a manager with a report another
   transaction holds is left for the next run too (it stays locked, unpurged, until this
   transaction ends). No report can appear meanwhile: naming the manager takes a key-share
   lock on its held row;
3. rows reached through those locks: the users' grants, memberships, sessions and tokens
   (deleted with them), and audit inserts; the audit chain head at COMMIT, last in every
   write's order.

Before, the purge waited for its users' reports (step 2 without SKIP LOCKED). A group
rename locks its group's row and then all its members, the deleted ones too, in id order:
holding a report that sorts before its deleted manager, it waited for the manager the purge
held, while the purge waited for that report, and PostgreSQL aborted one as a deadlock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, exists, or_, select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.errors import Conflict, NotFound
from app.ids import shown_id
from app.lifecycle.guard import DELIBERATE
from app.lifecycle.restore import hold_directory_for_reactivation
from app.lifecycle.users import GONE, reactivate_user
from app.lifecycle.visibility import announce_visibility
from app.mapping.locks import share_mapping
from app.models import User
from app.models.directory import UserStatus
from app.models.lifecycle import DeprovisionBatch, DeprovisionRecord


def list_batches(session: Session, organization_id: str | None = None) -> list[DeprovisionBatch]:
    """Mass-deprovisioning batches, newest first."""
    stmt = select(DeprovisionBatch).order_by(DeprovisionBatch.opened_at.desc())
    if organization_id:
        stmt = stmt.where(DeprovisionBatch.organization_id == organization_id)
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class BatchRestore:
    """What undoing a batch did: the users reactivated, and those left out, with why."""

    restored: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def restore_batch(session: Session, batch_id: str, actor: Actor) -> BatchRestore:
    """Reactivate every user of the batch still deprovisioned.

    A user who cannot come back (a deleted user whose userName a live user holds now) is
    skipped, with the reason in the result and the audit event; the others are restored.
    Conflict, nothing written, when the batch's directory is disabled (enable it first).
    """
    batch = session.get(DeprovisionBatch, batch_id)
    if batch is None:
        raise NotFound(f"no deprovisioning batch {shown_id(batch_id)}")
    if batch.restored_at is not None:
        raise Conflict(f"batch {batch_id} was already restored")
    user_ids = list(session.scalars(select(DeprovisionRecord.user_id).where(
        DeprovisionRecord.batch_id == batch.id, DeprovisionRecord.restored_at.is_(None))))
    done = BatchRestore()
    # The lock order's first steps, before the users' rows: a disabled directory refuses the
    # whole batch (Conflict, nothing written) rather than skipping each of its users.
    # (The mass-event guard opens batches only for records with a directory.)
    if batch.directory_id is not None:
        hold_directory_for_reactivation(session, batch.directory_id)
    share_mapping(session, batch.organization_id)
    # In id order, as every statement that locks several users takes them (the lock
    # order, app/mapping/reevaluation.py step 3): a group write holding some of these
    # users and waiting for another can then never wait in a cycle with this restore.
    for user_id in sorted(set(user_ids)):
        user = session.get(User, user_id)
        if user is None or user.status not in GONE:
            continue
        try:
            with session.begin_nested():
                reactivate_user(session, user, actor)
        except Conflict as exc:  # raised before the user changed: nothing to undo
            done.skipped[user_id] = str(exc)
            continue
        done.restored.append(user_id)
    batch.restored_at, batch.restored_by = utcnow(), actor.id or actor.type
    record(session, organization_id=batch.organization_id, action="directory:batch_restore",
           actor=actor, subject_type="deprovision_batch", subject_id=batch.id,
           data={"directory_id": batch.directory_id, "restored": len(done.restored),
                 **({"skipped": done.skipped} if done.skipped else {})})
    return done


def _past_retention(retention_days: int, deprovisioned_days: int,
                    now: datetime | None) -> ColumnElement[bool]:
    """Users soft-deleted more than ``retention_days`` ago, and (``deprovisioned_days`` > 0)
    users deprovisioned and untouched for more than that many days, unless an operator's
    deprovisioning holds them (``DELIBERATE``: purged, the account would come back as a new
    user at its IdP's next push)."""
    now = now or utcnow()
    deleted = and_(User.status == UserStatus.deleted,
                   User.deleted_at < now - timedelta(days=retention_days))
    if deprovisioned_days <= 0:
        return deleted
    held = exists().where(DeprovisionRecord.user_id == User.id,
                          DeprovisionRecord.restored_at.is_(None),
                          DeprovisionRecord.outcome == "applied",
                          DeprovisionRecord.trigger == DELIBERATE)
    deprovisioned = and_(User.status == UserStatus.deprovisioned,
                         User.updated_at < now - timedelta(days=deprovisioned_days), ~held)
    return or_(deleted, deprovisioned)


def purge_due(session: Session, *, retention_days: int, deprovisioned_days: int = 0,
              now: datetime | None = None) -> bool:
    """A read-only check: is any user past its retention period (``purge_deleted``)?"""
    return session.scalar(select(exists().where(
        _past_retention(retention_days, deprovisioned_days, now)))) or False


@dataclass(frozen=True)
class PurgeStep:
    """One batch of the purge: the users purged, and the id it read up to (None: no more
    users past the retention after it)."""

    purged: int
    scanned_to: str | None


def purge_deleted(session: Session, actor: Actor, *, retention_days: int,
                  deprovisioned_days: int = 0, now: datetime | None = None) -> int:
    """Every user past its retention at once, in the caller's transaction (small sets;
    `roster worker` and `roster lifecycle purge` go a batch at a time,
    app/lifecycle/purge.py)."""
    return purge_step(session, actor, retention_days=retention_days,
                      deprovisioned_days=deprovisioned_days, now=now).purged


def purge_step(session: Session, actor: Actor, *, retention_days: int,
               deprovisioned_days: int = 0, now: datetime | None = None, after: str = "",
               limit: int | None = None) -> PurgeStep:
    """Remove the identity data of users soft-deleted longer ago than the retention period,
    and (``deprovisioned_days`` > 0) of users deprovisioned and untouched longer than that
    (an IdP such as Okta deactivates leavers and never deletes them), unless an operator's
    deprovisioning holds them.

    Grants, memberships, sessions and tokens go with the row; audit events and
    deprovisioning records stay (they carry no foreign key to the user). A deprovisioned
    user was still a visible member and manager: its groups and reports are told, as a
    SCIM delete tells them (``announce_visibility``).

    The users are locked as they are read (PostgreSQL), in id order, skipping those another
    transaction holds: a reactivation under way keeps its user (it is read again next
    time), one that commits first is not read, and one that comes later finds the user
    gone; another worker's purge keeps the users it holds. Read unlocked, a reactivation
    committing meanwhile was undone (the user deleted after its 200), and two workers
    purging at once both recorded ``user:purge`` for the same users.

    ``limit`` users at most, those with ids after ``after``: one statement naming every
    user due failed on PostgreSQL past 65,535 of them (its limit of bound parameters), so
    a first purge of a large directory never purged anyone.
    """
    found = session.execute(select(User.id, User.organization_id, User.status).where(
        _past_retention(retention_days, deprovisioned_days, now), User.id > after)
        .order_by(User.id).limit(limit).with_for_update(skip_locked=True)).all()
    kept = _reports_held_elsewhere(session, [r[0] for r in found])
    rows = [r for r in found if r[0] not in kept]
    shown: list[User] = []
    for user_id, organization_id, status in rows:
        data: dict[str, Any] = {"retention_days": retention_days}
        if status == UserStatus.deprovisioned:
            data = {"retention_days": deprovisioned_days, "status": status.value}
            user = session.get(User, user_id)
            assert user is not None  # locked above
            announce_visibility(session, user, shown=False)
            shown.append(user)
        record(session, organization_id=organization_id, action="user:purge", actor=actor,
               subject_type="user", subject_id=user_id, data=data)
    if shown:
        session.flush()  # their shown versions, before the rows go
        for user in shown:
            session.expunge(user)
    if rows:
        purged = [r[0] for r in rows]
        # Their reports lose the link (the foreign key would set it NULL too). They showed
        # no manager already, but their version was their own and the purged manager's
        # part (app/directory/versions.py): without that part, their own must move, or a
        # version they had before the manager's delete (with its manager) would come back.
        session.execute(update(User).where(User.manager_id.in_(purged),
                                           User.id.not_in(purged))
                        .values(manager_id=None, version=User.version + 1)
                        .execution_options(synchronize_session=False))
        session.execute(delete(User).where(User.id.in_(purged))
                        .execution_options(synchronize_session=False))
    full = limit is not None and len(found) == limit
    return PurgeStep(len(rows), found[-1][0] if full else None)


def _reports_held_elsewhere(session: Session, user_ids: list[str]) -> set[str]:
    """Lock the reports of these (held) users without waiting (step 2 of the lock
    order above); the managers of those another transaction holds, which stay for now."""
    if not user_ids or session.get_bind().dialect.name != "postgresql":
        return set()  # SQLite: one writer at a time, nothing to wait for
    reports = session.execute(select(User.id, User.manager_id).where(
        User.manager_id.in_(user_ids), User.id.not_in(user_ids))).all()
    if not reports:
        return set()
    locked = set(session.scalars(select(User.id).where(User.id.in_([r[0] for r in reports]))
                                 .order_by(User.id)
                                 .with_for_update(key_share=True, skip_locked=True)))
    return {manager for report, manager in reports if report not in locked}
