"""Webhook deliveries: fan the outbox out per endpoint, claim with a lease, record results.

At-least-once: a worker killed mid-delivery leaves a lease that expires, and another
worker sends the same event again with the same id (the receiver's idempotency key).
Order per aggregate (user): a delivery waits while an older one of the same aggregate
to the same endpoint is still pending or dead. A dead one holds the later ones dead behind
it (``HELD``), and ``redeliver`` queues it again with them, in id order: a dead letter that
let the later events pass would reach the receiver after them, redelivered, and undo them
there (a grant.added re-granting what a later grant.removed took away).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Row, and_, exists, func, insert, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from app.events.endpoints import WebhookConfig as WebhookConfig
from app.events.watermark import (
    current_epoch,
    fan_out_position,
    purged_unread,
    purged_unread_each,
)
from app.events.window import anything_after, open_window
from app.log_throttle import EveryInterval
from app.models import OutboxEvent
from app.models.lifecycle import WebhookCursor, WebhookDelivery

log = logging.getLogger("roster.worker")
# A fan-out held behind purged events is logged once a minute, not every round.
_HELD_LOG = EveryInterval(60.0)
# Outbox rows read per query by a fan-out (a new URL reads the retained history, page by page).
FAN_OUT_PAGE = 1000
# Pages a round fans out to one URL at most: a new URL's retained history (a million events
# after a month) goes over many rounds, each a short transaction.
FAN_OUT_ROUND_PAGES = 10
# The last_error of a delivery dead-lettered because an older one of its aggregate is dead.
HELD = "held behind dead delivery {}"
# The statuses that keep an aggregate's later deliveries waiting.
BLOCKING = ("pending", "dead")


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds a lease on, with the event to send."""

    id: int
    endpoint: str
    attempts: int
    event: dict[str, Any]
    aggregate_id: str | None = None


def event_body(event: OutboxEvent) -> dict[str, Any]:
    """The JSON a receiver gets (also the pull feed's item)."""
    return {"id": event.event_id, "sequence": event.id, "type": event.type,
            "organization_id": event.organization_id, "aggregate_id": event.aggregate_id,
            "created_at": event.created_at.isoformat(), "data": event.payload}


def fan_out(session: Session, config: WebhookConfig, now: datetime) -> int:
    """Create a pending delivery per endpoint for each outbox event not yet fanned out.

    Each endpoint's cursor moves through the outbox as the pull feed's does, by the feed's
    own windows (app/events/window.py): the newest id on SQLite; on PostgreSQL snapshots of
    transaction ids, so an event whose transaction commits late, or took its id before its
    transaction had one, comes in a later window, never skipped, and a transaction left
    open for hours holds back only its own events. (Before: an outbox id passed once a later
    snapshot's xmin reached a stored xmax, which an idle transaction, or a restore on
    another cluster, held back for good while every round read the outbox again from there.)
    An event that already has a delivery to the endpoint gets no second one. An endpoint
    whose cursor stands before events the retention purge deleted (it was out of
    webhooks.urls meanwhile) holds, logged, until `roster events reset-cursor`; a new one
    starts at the oldest event kept (app/events/retention.py).

    A round reads at most ``FAN_OUT_ROUND_PAGES`` pages per URL and leaves the cursor where
    it stopped (in the middle of a window on PostgreSQL), so a URL added, or reset, takes
    the retained outbox over several short transactions: in one, a month of it held
    SQLite's write lock (SCIM writes answered 503 meanwhile) or the cursors' row locks.

    Cursors are locked with the URLs sorted, not as ``webhooks.urls`` lists them: two nodes
    listing them in different orders each held a cursor the other waited for (a deadlock).
    """
    created = 0
    epoch = current_epoch(session)
    for endpoint in sorted(set(config.endpoints)):
        cursor, new = _lock_cursor(session, endpoint)
        position = fan_out_position(session, cursor)
        if not new and purged_unread(session, position, cursor.purge_epoch):
            _report_held(endpoint)
            continue
        for _page in range(FAN_OUT_ROUND_PAGES):  # the rest next round (fan_out_due says so)
            window = open_window(session, position)
            rows = session.execute(
                select(OutboxEvent.id, OutboxEvent.event_id, OutboxEvent.aggregate_id)
                .where(*window.where).order_by(OutboxEvent.id).limit(FAN_OUT_PAGE)).all()
            created += _add_deliveries(session, endpoint, rows, now)
            position = window.after(rows[-1].id if rows else None, len(rows) == FAN_OUT_PAGE)
            if len(rows) < FAN_OUT_PAGE:
                break
        if _postgres(session):
            cursor.position = position.values()
        else:
            cursor.last_outbox_id = position.after_id
        cursor.purge_epoch = epoch
    return created


def _report_held(endpoint: str) -> None:
    """Say (once a minute) that an endpoint's fan-out holds behind purged events."""
    if _HELD_LOG.due():
        log.error("webhook fan-out to %s is held: the retention purge deleted events before "
                  "they were fanned out to it (it was not in webhooks.urls then); run `roster "
                  "events reset-cursor %s` to send it the retained events, oldest first",
                  endpoint, endpoint)


def _add_deliveries(session: Session, endpoint: str, rows: Sequence[Row[Any]],
                    now: datetime) -> int:
    if not rows:
        return 0
    have = set(session.scalars(select(WebhookDelivery.outbox_id).where(
        WebhookDelivery.endpoint == endpoint,
        WebhookDelivery.outbox_id.in_([r.id for r in rows]))))
    fresh = [r for r in rows if r.id not in have]
    if fresh:
        held = _dead_heads(session, endpoint, {r.aggregate_id for r in fresh})
        session.execute(insert(WebhookDelivery), [
            {"outbox_id": r.id, "event_id": r.event_id, "endpoint": endpoint,
             "aggregate_id": r.aggregate_id, "attempts": 0, "created_at": now,
             "next_attempt_at": now, "status": "dead" if r.aggregate_id in held else "pending",
             "last_error": HELD.format(held[r.aggregate_id]) if r.aggregate_id in held
             else None} for r in fresh])
    return len(fresh)


def _dead_heads(session: Session, endpoint: str,
                aggregates: set[str | None]) -> dict[str | None, int]:
    """The oldest dead delivery to ``endpoint`` of each of these aggregates that has one.

    A new event of such an aggregate is dead-lettered behind it at once (it could not be
    sent before it). Usually nothing is dead: one probe of the status index then."""
    aggregates.discard(None)
    dead = WebhookDelivery.status == "dead"
    if not aggregates or not session.scalar(select(exists().where(dead))):
        return {}
    rows = session.execute(
        select(WebhookDelivery.aggregate_id, func.min(WebhookDelivery.id))
        .where(dead, WebhookDelivery.endpoint == endpoint,
               WebhookDelivery.aggregate_id.in_(aggregates))
        .group_by(WebhookDelivery.aggregate_id)).all()
    return {aggregate_id: first for aggregate_id, first in rows}


def fan_out_due(session: Session, config: WebhookConfig) -> bool:
    """A read-only check: is any outbox event past an endpoint's cursor (work for fan_out)?
    Not one held behind purged events (said in the log instead)."""
    endpoints = config.endpoints
    cursors = {c.endpoint: c for c in session.scalars(
        select(WebhookCursor).where(WebhookCursor.endpoint.in_(endpoints)))}
    positions = {url: fan_out_position(session, cursors.get(url)) for url in endpoints}
    # A constant number of statements, whatever the number of URLs (each round runs this).
    known = [url for url in endpoints if url in cursors]
    held = {url for url, flag in zip(known, purged_unread_each(
        session, [(positions[url], cursors[url].purge_epoch) for url in known]), strict=True)
        if flag}
    for url in endpoints:
        if url in held:
            _report_held(url)
    return anything_after(session, [positions[u] for u in endpoints if u not in held])


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _lock_cursor(session: Session, endpoint: str) -> tuple[WebhookCursor, bool]:
    """The endpoint's cursor, locked; and whether it was created now (a new URL)."""
    dialect = session.get_bind().dialect.name
    upsert = pg_insert if dialect == "postgresql" else sqlite_insert
    # RETURNING, not rowcount: psycopg reports -1 for an INSERT ... ON CONFLICT DO NOTHING.
    new = session.execute(upsert(WebhookCursor).values(endpoint=endpoint, last_outbox_id=0,
                                                       purge_epoch=0)
                          .on_conflict_do_nothing(index_elements=["endpoint"])
                          .returning(WebhookCursor.endpoint)).first() is not None
    stmt = select(WebhookCursor).where(WebhookCursor.endpoint == endpoint).with_for_update()
    cursor = session.execute(stmt.execution_options(populate_existing=True)).scalar_one()
    return cursor, new


def claim_due(session: Session, config: WebhookConfig, now: datetime) -> bool:
    """A read-only check: is any pending delivery due and free (work for claim)?"""
    return session.scalar(select(exists().where(
        WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
        WebhookDelivery.endpoint.in_(config.endpoints),
        (WebhookDelivery.leased_until.is_(None)) | (WebhookDelivery.leased_until < now)))
    ) or False


def claim(session: Session, config: WebhookConfig, worker_id: str,
          now: datetime) -> list[Claimed]:
    """Lease due deliveries, oldest first, skipping rows another worker holds (PostgreSQL).

    Only to the URLs configured now: one taken out of ``webhooks.urls`` (decommissioned,
    moved, compromised) gets nothing more; its pending deliveries stay, listed."""
    older = aliased(WebhookDelivery)
    blocked = exists().where(and_(older.endpoint == WebhookDelivery.endpoint,
                                  older.aggregate_id == WebhookDelivery.aggregate_id,
                                  older.id < WebhookDelivery.id,
                                  older.status.in_(BLOCKING)))
    stmt = (select(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now,
                   (WebhookDelivery.leased_until.is_(None)) | (WebhookDelivery.leased_until < now),
                   WebhookDelivery.endpoint.in_(config.endpoints), ~blocked)
            .order_by(WebhookDelivery.id).limit(config.batch_size)
            .with_for_update(skip_locked=True, of=WebhookDelivery))
    heads = list(session.scalars(stmt))
    if not heads:
        return []
    deliveries = sorted([*heads, *_followers(session, config, heads, now, worker_id)],
                        key=lambda d: d.id)
    until = now + timedelta(seconds=config.lease_seconds)
    events = {e.id: e for e in session.scalars(select(OutboxEvent).where(
        OutboxEvent.id.in_([d.outbox_id for d in deliveries])))}
    for d in deliveries:
        d.leased_until, d.leased_by = until, worker_id
    return [Claimed(d.id, d.endpoint, d.attempts, event_body(events[d.outbox_id]),
                    d.aggregate_id) for d in deliveries]


def _followers(session: Session, config: WebhookConfig, heads: list[WebhookDelivery],
               now: datetime, worker_id: str) -> list[WebhookDelivery]:
    """The next due deliveries of the claimed heads' runs (URL and aggregate), so one round
    sends a user's burst (grant.removed, session.revoked, user.deprovisioned) in order.

    No other worker can take them: each waits behind a head this worker holds. Only these
    runs are locked, none skipped (locking a user's rows at every URL, SKIP LOCKED, made a
    worker claiming another URL skip some and send a third event before the second)."""
    keys = {(h.endpoint, h.aggregate_id) for h in heads if h.aggregate_id is not None}
    if not keys:
        return []
    stmt = (select(WebhookDelivery)
            .where(WebhookDelivery.status.in_(BLOCKING),
                   tuple_(WebhookDelivery.endpoint, WebhookDelivery.aggregate_id).in_(
                       sorted(keys, key=str)),
                   WebhookDelivery.id.not_in([h.id for h in heads]),
                   WebhookDelivery.id > min(h.id for h in heads))
            .order_by(WebhookDelivery.id).limit(config.batch_size)
            .with_for_update())
    out: list[WebhookDelivery] = []
    stopped: set[tuple[str, str | None]] = set()
    for d in session.scalars(stmt):
        key = (d.endpoint, d.aggregate_id)
        # A run stops at the first one not due (a retry scheduled later keeps its place),
        # or dead (a delivery redelivered while a later one was dead goes alone), or leased
        # by another worker (an old event redelivered while a worker posts the newer ones:
        # they are that worker's).
        if key not in keys or key in stopped:
            continue
        if d.status == "dead" or d.next_attempt_at > now or (
                d.leased_until is not None and d.leased_until >= now
                and d.leased_by != worker_id):
            stopped.add(key)
            continue
        out.append(d)
    return out


def record_result(session: Session, config: WebhookConfig, delivery_id: int, *,
                  worker_id: str, ok: bool, status: int | None, error: str | None,
                  now: datetime, retry_after: float | None = None) -> str:
    """Mark delivered, or schedule a retry with backoff and jitter, or dead-letter it.

    A receiver's ``Retry-After`` (RFC 9110 §10.2.3; RFC 6585 §4 for 429) defers the retry
    to then when that is later than the backoff, at most ``retry_max_seconds`` away.

    Only the lease's holder writes it: a late worker leaves a new lease alone (clearing it
    let a third worker send the delivery while the second still was)."""
    d = session.get(WebhookDelivery, delivery_id, with_for_update=True, populate_existing=True)
    if d is None or d.status != "pending":
        return d.status if d else "missing"
    if d.leased_by not in (None, worker_id):  # another worker claimed it since
        return "leased by another worker"
    d.attempts += 1
    d.last_status, d.last_error = status, (error or "")[:1000] or None
    d.leased_until = d.leased_by = None
    if ok:
        d.status, d.delivered_at = "delivered", now
    elif now - d.created_at >= timedelta(seconds=config.dead_after_seconds):
        d.status = "dead"
        _hold_behind(session, d)
    else:
        asked = timedelta(seconds=min(retry_after or 0.0, config.retry_max_seconds))
        d.next_attempt_at = now + max(backoff(config, d.attempts), asked)
    return d.status


def backoff(config: WebhookConfig, attempts: int) -> timedelta:
    """base * 2^(attempts-1), capped, with full jitter on the upper half (never zero)."""
    ceiling = min(config.retry_max_seconds, config.retry_base_seconds * 2 ** (attempts - 1))
    return timedelta(seconds=ceiling / 2 + random.uniform(0, ceiling / 2))  # noqa: S311


def _hold_behind(session: Session, head: WebhookDelivery) -> None:
    """``head`` went dead: its aggregate's later pending deliveries to the same endpoint go
    dead behind it (they were waiting for it), so the dead letters list the whole run."""
    if head.aggregate_id is None:
        return
    session.execute(update(WebhookDelivery).where(
        WebhookDelivery.endpoint == head.endpoint,
        WebhookDelivery.aggregate_id == head.aggregate_id,
        WebhookDelivery.id > head.id, WebhookDelivery.status == "pending")
        .values(status="dead", last_error=HELD.format(head.id), leased_until=None,
                leased_by=None).execution_options(synchronize_session=False))


def redeliver(session: Session, delivery_id: int, now: datetime) -> list[WebhookDelivery]:
    """Queue a dead (or delivered) delivery again for an immediate attempt (a pending one:
    due now, unless a worker holds it), and with a dead
    one the later dead deliveries of its aggregate to its endpoint, which follow it in id
    order; empty when there is no such delivery. Behind an older dead delivery of the
    aggregate they still wait (``blocked_by``)."""
    d = session.get(WebhookDelivery, delivery_id)
    if d is None:
        return []
    queued = [d]
    if d.status == "dead" and d.aggregate_id is not None:
        queued += session.scalars(select(WebhookDelivery).where(
            WebhookDelivery.endpoint == d.endpoint,
            WebhookDelivery.aggregate_id == d.aggregate_id,
            WebhookDelivery.id > d.id, WebhookDelivery.status == "dead")
            .order_by(WebhookDelivery.id))
    # Each keeps created_at, its dead_after_seconds clock (README): failing again, it goes
    # dead at once, and the list still tells when it was queued. A pending one keeps its
    # lease: a worker may be posting it (and its user's later events) right now, and a
    # cleared lease let a second worker claim and post the whole run beside it.
    for each in queued:
        if each.status != "pending":
            each.leased_until = each.leased_by = None
        each.status, each.next_attempt_at = "pending", now
    return queued


def blocked_by(session: Session, delivery: WebhookDelivery) -> int | None:
    """The oldest earlier dead delivery of the same aggregate and endpoint, if any."""
    if delivery.aggregate_id is None:
        return None
    return session.scalar(select(func.min(WebhookDelivery.id)).where(
        WebhookDelivery.endpoint == delivery.endpoint,
        WebhookDelivery.aggregate_id == delivery.aggregate_id,
        WebhookDelivery.id < delivery.id, WebhookDelivery.status == "dead"))


def list_deliveries(session: Session, *, status: str | None = None, limit: int = 100,
                    after_id: int = 0, newest_first: bool = False) -> list[WebhookDelivery]:
    """Deliveries in id order (``newest_first``: the ``limit`` newest, newest first),
    optionally only one status."""
    stmt = select(WebhookDelivery).where(WebhookDelivery.id > after_id)
    if status:
        stmt = stmt.where(WebhookDelivery.status == status)
    order = WebhookDelivery.id.desc() if newest_first else WebhookDelivery.id
    return list(session.scalars(stmt.order_by(order).limit(limit)))


def release(session: Session, delivery_ids: list[int], worker_id: str) -> None:
    """Give back ``worker_id``'s leases unsent (an earlier one failed, or time ran out)."""
    if delivery_ids:
        session.execute(update(WebhookDelivery).where(WebhookDelivery.id.in_(delivery_ids),
                                                      WebhookDelivery.leased_by == worker_id)
                        .values(leased_until=None, leased_by=None))
