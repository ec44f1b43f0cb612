"""The pull feed: outbox events after a position, so a portal can rebuild from any point.

No event may be skipped. The position and its windows (snapshots of transaction ids on
PostgreSQL, the last id on SQLite) are app/events/window.py's, shared with the webhook
fan-out: a transaction still running holds its window back; events are late, never lost;
a cursor carried to another cluster by a dump and restore resumes where it stood. Events
the retention purge deleted before a cursor read them expire it (410), never skipped.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.errors import CursorExpired
from app.events.delivery import event_body
from app.events.watermark import current_epoch, purged_unread
from app.events.window import (
    MAX_IN_PROGRESS,
    FeedPosition,
    Snapshot,
    bad_cursor,
    open_window,
)
from app.models import OutboxEvent

__all__ = ["CURSOR_EXPIRED", "MAX_IN_PROGRESS", "FeedPosition", "Snapshot", "events_after"]

CURSOR_EXPIRED = (
    "cursor_expired: events after this cursor were purged (older than "
    "events.retention_days) before it read them, so the feed cannot go on from it without "
    "skipping them. Resync: read the feed again without 'after' (it starts at the oldest "
    "event still kept), rebuild what is older from the current state, and keep the new "
    "next_cursor")


def events_after(session: Session, position: FeedPosition | None, *, limit: int = 100,
                 organization_id: str | None = None,
                 types: list[str] | None = None) -> tuple[list[dict[str, Any]], FeedPosition]:
    """A page of events after ``position`` (None: from the oldest event kept), oldest
    first, and the position after it.

    CursorExpired when the retention purge deleted events ``position`` had not read
    (app/events/watermark.py): reading on would skip them. The epoch is read before the
    page, so a purge that commits after the page is read is checked on the next one. On
    PostgreSQL (READ COMMITTED: each statement sees what was committed when it began) one
    that commits between the epoch and the page may have deleted events of the page's
    window before the page read them, and the next position passes that window: the epoch
    is read again after the page, and such a purge expires the cursor now."""
    epoch = current_epoch(session)
    given = position is not None
    if position is None:
        position = FeedPosition()
    elif position.epoch > epoch:  # no purge has that epoch: not a cursor of this feed
        raise bad_cursor()
    elif purged_unread(session, position, position.epoch):
        raise CursorExpired(CURSOR_EXPIRED, field="after")
    window = open_window(session, position)
    stmt = select(OutboxEvent).where(*window.where)
    if organization_id:
        stmt = stmt.where(OutboxEvent.organization_id == organization_id)
    if types:
        stmt = stmt.where(OutboxEvent.type.in_(types))
    rows = list(session.scalars(stmt.order_by(OutboxEvent.id).limit(limit)))
    if given and window.upto is not None and current_epoch(session) != epoch \
            and purged_unread(session, position, epoch):
        raise CursorExpired(CURSOR_EXPIRED, field="after")
    full = len(rows) == limit
    following = window.after(rows[-1].id if rows else None, full)
    if window.upto is None and not full and (organization_id or types):
        # SQLite, a filtered page that listed all it matched: the reader has passed every
        # event up to the newest in this transaction's snapshot, the others' too. Kept at
        # its own last event, a quiet organization's cursor stayed behind the others'
        # events, and their purge expired it though it had missed nothing (PostgreSQL's
        # window after such a page is a snapshot taken now, which passes them already).
        newest = session.scalar(select(func.max(OutboxEvent.id))) or 0
        following = FeedPosition(max(following.after_id, newest))
    return [event_body(e) for e in rows], replace(following, epoch=epoch)
