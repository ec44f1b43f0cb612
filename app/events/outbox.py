"""Write outbox events in the caller's transaction, so a change and its event commit together."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.db import new_id, utcnow
from app.models import OutboxEvent


def emit(
    session: Session,
    *,
    organization_id: str | None,
    type: str,
    aggregate_id: str | None,
    payload: dict[str, Any],
) -> OutboxEvent:
    """Queue one event for the portal; nothing is sent until the transaction commits."""
    event = OutboxEvent(
        event_id=new_id(), organization_id=organization_id, type=type,
        aggregate_id=aggregate_id, payload=payload, created_at=utcnow(),
    )
    session.add(event)
    return event
