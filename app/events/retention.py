"""Retention of the event tables: old events and delivered deliveries go, in short batches,
and never an event someone still needs.

Purged once ``events.retention_days`` old (``roster worker`` every 10 minutes, ``roster
events purge`` at once):

- a webhook delivery that was delivered (by when it was), unless its event stays for
  another delivery, pending or dead, or is the newest (the delivery is how a fan-out, after
  `roster events reset-cursor`, knows the URL has it);
- an outbox event, with its deliveries, when none of them is pending or dead and every URL
  of ``webhooks.urls`` has had it fanned out (its cursor passed it). A dead letter and the
  deliveries held dead behind it (their aggregate's order rests on them) stay with their
  events until redelivered, and a worker that was down, or a URL just added, keeps what it
  has yet to read.

The pull feed's readers are not known here: each batch records what it deleted
(app/events/watermark.py), and a cursor behind it is told ``410 cursor_expired`` instead of
reading on past the gap. Events are walked in id order from the oldest, a batch at a time,
each batch its own transaction; the walk stops at the first event younger than the
retention (ids and ``created_at`` rise together), so a run reads no more of the outbox than
it may delete, plus what it keeps. The newest event and the newest delivery always stay:
SQLite gives a new row the id after the largest present, so purging the largest would hand
its id out again, and a cursor past it would skip the new event.

PostgreSQL: a batch locks the events it deletes (``FOR UPDATE SKIP LOCKED``: one a fan-out is
just giving a delivery, which needs a key-share lock on it, waits for the next run) and then
their deliveries, and checks the deliveries' status again under the lock (one redelivered
meanwhile keeps its event). Batches are serialised by an advisory transaction lock, so purge
epochs commit in the order of their ids. No lock on a whole table is taken.

The marks the batches record (``outbox_purges``) go too, once ``MARKS_KEPT`` retention
periods old, at most a batch of them per run (app/events/watermark.py prune_purges: a
cursor from before the marks kept is expired, never read on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, select
from sqlalchemy.orm import Session, aliased

from app.db import Database, utcnow
from app.events.delivery import BLOCKING
from app.events.watermark import fan_out_position, leading_before, prune_purges, record_purge
from app.events.window import FeedPosition, cluster_here, passed
from app.models import OutboxEvent
from app.models.lifecycle import WebhookCursor, WebhookDelivery

# pg_advisory_xact_lock key of the purge (a signed 64-bit number: "roster" and 0021).
_PURGE_LOCK_KEY = 0x726F73746572_0021
DEFAULT_BATCH = 1000
# Purge marks (outbox_purges) are kept this many retention periods: a cursor issued before
# a dropped one is expired (410), so it is one its reader left unused that long.
MARKS_KEPT = 2


@dataclass(frozen=True)
class Retention:
    """The [events] retention settings; ``days`` 0 turns the purge off."""

    days: int
    batch_size: int = DEFAULT_BATCH

    @classmethod
    def from_settings(cls, settings: dict[str, dict[str, Any]]) -> Retention:
        """From validated settings."""
        section = settings["events"]
        return cls(days=section["retention_days"], batch_size=section["purge_batch_size"])


@dataclass
class PurgeCounts:
    """What one run deleted. ``batches``: the transactions that deleted something;
    ``transactions``: all it ran (one that only looked deletes nothing); ``more``: it
    stopped at its batch bound with work left."""

    events: int = 0
    deliveries: int = 0
    batches: int = 0
    transactions: int = 0
    more: bool = False
    marks: int = 0  # outbox_purges rows pruned (app/events/watermark.py prune_purges)

    def add(self, events: int, deliveries: int) -> None:
        """One transaction's deletions."""
        self.transactions += 1
        self.events += events
        self.deliveries += deliveries
        if events or deliveries:
            self.batches += 1


@dataclass(frozen=True)
class _Step:
    events: int
    deliveries: int
    scanned_to: int | None  # None: the walk reached the retention's edge (or the end)


def purge_old_events(db: Database, retention: Retention, urls: Sequence[str], *,
          max_batches: int | None = None, now: datetime | None = None) -> PurgeCounts:
    """Purge what is older than the retention, a batch per transaction; at most
    ``max_batches`` batches (then ``more`` says whether work was left)."""
    counts = PurgeCounts()
    if retention.days <= 0:
        return counts
    cutoff = (now or utcnow()) - timedelta(days=retention.days)

    def spent() -> bool:
        counts.more = max_batches is not None and counts.transactions >= max_batches
        return counts.more

    while not spent():
        with db.transaction() as session:
            deleted, full = purge_delivered(session, cutoff, retention.batch_size)
        counts.add(0, deleted)
        if not full:
            break
    scanned = 0
    while not spent():
        with db.transaction() as session:
            step = purge_events(session, urls, cutoff, retention.batch_size,
                                after_id=scanned, now=now or utcnow())
        counts.add(step.events, step.deliveries)
        if step.scanned_to is None:
            break
        scanned = step.scanned_to
    if not counts.more:
        with db.transaction() as session:
            counts.marks = prune_marks(session, (now or utcnow()) - MARKS_KEPT * retention.days
                                       * timedelta(days=1), retention.batch_size)
    return counts


def prune_marks(session: Session, cutoff: datetime, limit: int) -> int:
    """Drop up to ``limit`` purge marks recorded before ``cutoff`` (watermark.prune_purges),
    under the purge's lock: no purge records a mark meanwhile."""
    if _postgres(session):
        session.execute(select(func.pg_advisory_xact_lock(_PURGE_LOCK_KEY)))
    return prune_purges(session, cutoff, limit)


def purge_delivered(session: Session, cutoff: datetime, limit: int) -> tuple[int, bool]:
    """Delete up to ``limit`` deliveries delivered before ``cutoff`` (the partial index on
    delivered_at finds them); returns how many, and whether the batch was full.

    Not one whose event stays for another delivery, pending or dead, nor one of the newest
    event (which always stays): the delivery is what tells a fan-out the URL has the event,
    and `roster events reset-cursor` sent such an event to the URL a second time."""
    sibling = aliased(WebhookDelivery)
    kept_event = exists().where(sibling.outbox_id == WebhookDelivery.outbox_id,
                                sibling.status.in_(BLOCKING))
    pick = select(WebhookDelivery.id).where(
        WebhookDelivery.status == "delivered", WebhookDelivery.delivered_at < cutoff,
        WebhookDelivery.id < select(func.max(WebhookDelivery.id)).scalar_subquery(),
        WebhookDelivery.outbox_id < select(func.max(OutboxEvent.id)).scalar_subquery(),
        ~kept_event,
    ).limit(limit)
    if _postgres(session):
        pick = pick.with_for_update(skip_locked=True)
    ids = list(session.scalars(pick))
    if not ids:
        return 0, False
    # The status again: a redelivery that committed meanwhile is pending now (PostgreSQL
    # re-checks a changed row's condition before deleting it).
    deleted = session.execute(delete(WebhookDelivery).where(
        WebhookDelivery.id.in_(ids), WebhookDelivery.status == "delivered")).rowcount
    return deleted or 0, len(ids) == limit


def purge_events(session: Session, urls: Sequence[str], cutoff: datetime, limit: int, *,
                 after_id: int, now: datetime) -> _Step:
    """One batch: the next ``limit`` events after ``after_id`` in id order; those older
    than ``cutoff`` that nobody still needs are deleted with their deliveries."""
    newest = select(func.max(OutboxEvent.id)).scalar_subquery()
    rows = session.execute(select(OutboxEvent.id, OutboxEvent.created_at)
                           .where(OutboxEvent.id > after_id, OutboxEvent.id < newest)
                           .order_by(OutboxEvent.id).limit(limit)).all()
    old = leading_before(rows, cutoff)
    if not old:
        return _Step(0, 0, None)
    edge = len(old) < len(rows) or len(rows) < limit
    postgres = _postgres(session)
    if postgres:
        session.execute(select(func.pg_advisory_xact_lock(_PURGE_LOCK_KEY)))
    here = cluster_here(session)
    needed = exists().where(WebhookDelivery.outbox_id == OutboxEvent.id,
                            WebhookDelivery.status.in_(BLOCKING))
    pick = select(OutboxEvent.id, OutboxEvent.txid, OutboxEvent.cluster_id).where(
        OutboxEvent.id.in_(old), ~needed,
        *[passed(position, here) for position in _fan_out_positions(session, urls)])
    if postgres:
        pick = pick.with_for_update(skip_locked=True, of=OutboxEvent)
    gone = {r.id: r for r in session.execute(pick).all()}
    if gone and postgres:
        session.execute(select(WebhookDelivery.id).where(
            WebhookDelivery.outbox_id.in_(list(gone))).with_for_update())
        for outbox_id in session.scalars(select(WebhookDelivery.outbox_id).where(
                WebhookDelivery.outbox_id.in_(list(gone)),
                WebhookDelivery.status != "delivered")):
            gone.pop(outbox_id, None)
    deliveries = events = 0
    if gone:
        deliveries = session.execute(delete(WebhookDelivery).where(
            WebhookDelivery.outbox_id.in_(list(gone)))).rowcount or 0
        events = session.execute(delete(OutboxEvent).where(
            OutboxEvent.id.in_(list(gone)))).rowcount or 0
        record_purge(session, [(r.id, r.txid, r.cluster_id) for r in gone.values()], now)
    return _Step(events, deliveries, None if edge else old[-1])


def _fan_out_positions(session: Session, urls: Sequence[str]) -> list[FeedPosition]:
    """Where each URL's fan-out stands (a URL without a cursor has read nothing)."""
    cursors = {c.endpoint: c for c in session.scalars(
        select(WebhookCursor).where(WebhookCursor.endpoint.in_(urls)))} if urls else {}
    return [fan_out_position(session, cursors.get(url)) for url in urls]


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
