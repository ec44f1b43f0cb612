"""The pull feed: outbox events after a cursor, so a portal can rebuild from any point."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.events.delivery import event_body
from app.models import OutboxEvent


def events_after(session: Session, after: int, *, limit: int = 100,
                 organization_id: str | None = None,
                 types: list[str] | None = None) -> list[dict[str, Any]]:
    """Events with sequence greater than ``after``, oldest first (sequence = outbox id)."""
    stmt = select(OutboxEvent).where(OutboxEvent.id > after).order_by(OutboxEvent.id)
    if organization_id:
        stmt = stmt.where(OutboxEvent.organization_id == organization_id)
    if types:
        stmt = stmt.where(OutboxEvent.type.in_(types))
    return [event_body(e) for e in session.scalars(stmt.limit(limit))]
