"""Write outbox events in the caller's transaction, so a change and its event commit together."""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from app.db import flush_if_pending, new_id, utcnow
from app.models import Organization, OutboxEvent
from app.sql import fetch

_INSERT = insert(OutboxEvent.__table__)  # the columns come from the parameters


def emit(
    session: Session,
    *,
    organization_id: str | None,
    type: str,
    aggregate_id: str | None,
    payload: dict[str, Any],
) -> str:
    """Queue one event for the portal; nothing is sent until the transaction commits.

    The row is written at once with a Core INSERT of plain values (cheaper than an ORM
    object flushed later, or built only to be read back). Returns the event's id.
    """
    event_id = new_id()
    flush_if_pending(session, Organization)
    fetch(session.connection(), _INSERT, {
        "event_id": event_id, "organization_id": organization_id, "type": type,
        "aggregate_id": aggregate_id, "payload": payload, "created_at": utcnow()})
    return event_id
