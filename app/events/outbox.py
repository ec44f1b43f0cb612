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


def emit_many(
    session: Session,
    *,
    organization_id: str | None,
    type: str,
    events: list[tuple[str | None, dict[str, Any]]],
) -> list[str]:
    """Queue one event per ``(aggregate_id, payload)``, in that order, with one INSERT of
    many rows: a change fanned out to thousands of aggregates (a manager's reports) costs
    one statement, not one per aggregate. Returns the events' ids."""
    if not events:
        return []
    flush_if_pending(session, Organization)
    now = utcnow()
    rows = [{"event_id": new_id(), "organization_id": organization_id, "type": type,
             "aggregate_id": aggregate_id, "payload": payload, "created_at": now}
            for aggregate_id, payload in events]
    session.connection().execute(_INSERT, rows)
    return [row["event_id"] for row in rows]
