"""The pull feed: outbox events after a position, so a portal can rebuild from any point.

No event may be skipped. The position and its windows (snapshots of transaction ids on
PostgreSQL, the last id on SQLite) are app/events/window.py's, shared with the webhook
fan-out: a transaction still running holds its window back; events are late, never lost;
a cursor carried to another cluster by a dump and restore resumes where it stood.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.events.delivery import event_body
from app.events.window import MAX_IN_PROGRESS, FeedPosition, Snapshot, open_window
from app.models import OutboxEvent

__all__ = ["MAX_IN_PROGRESS", "FeedPosition", "Snapshot", "events_after"]


def events_after(session: Session, position: FeedPosition, *, limit: int = 100,
                 organization_id: str | None = None,
                 types: list[str] | None = None) -> tuple[list[dict[str, Any]], FeedPosition]:
    """A page of events after ``position``, oldest first, and the position after it."""
    window = open_window(session, position)
    stmt = select(OutboxEvent).where(*window.where)
    if organization_id:
        stmt = stmt.where(OutboxEvent.organization_id == organization_id)
    if types:
        stmt = stmt.where(OutboxEvent.type.in_(types))
    rows = list(session.scalars(stmt.order_by(OutboxEvent.id).limit(limit)))
    return ([event_body(e) for e in rows],
            window.after(rows[-1].id if rows else None, len(rows) == limit))
