"""Helpers of the retention tests: events written in their own transactions, then aged."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from app.db import Database, utcnow
from app.events import emit
from app.events.delivery import WebhookConfig, fan_out
from app.events.retention import PurgeCounts, Retention, purge_old_events
from app.models import OutboxEvent
from app.models.lifecycle import WebhookDelivery

DAYS = 30


def write(db: Database, tenant: Any, *names: str, aggregate: str | None = None) -> list[int]:
    """One event per name, each in its own transaction; their outbox ids."""
    for name in names:
        with db.transaction() as session:
            emit(session, organization_id=tenant.org.id, type="test.event",
                 aggregate_id=aggregate or name, payload={"name": name})
    with db.engine.connect() as conn:
        return list(conn.scalars(sa.text(
            "SELECT id FROM outbox_events ORDER BY id DESC LIMIT :n"), {"n": len(names)}))[::-1]


def age(db: Database, days: int = DAYS + 1) -> None:
    """Make every event, delivery and delivery result ``days`` older."""
    shift = timedelta(days=days)
    with db.transaction() as session:
        for column in (OutboxEvent.created_at, WebhookDelivery.created_at,
                       WebhookDelivery.delivered_at):
            table = column.class_
            for row_id, value in session.execute(
                    sa.select(table.id, column).where(column.is_not(None))).all():
                session.execute(sa.update(table).where(table.id == row_id)
                                .values({column.key: value - shift}))


def fan_out_to(db: Database, *urls: str) -> None:
    """One fan-out round to ``urls`` (creates pending deliveries)."""
    with db.transaction() as session:
        fan_out(session, WebhookConfig(urls=urls, secret="s3cret-for-tests"), utcnow())


def set_status(db: Database, status: str, *outbox_ids: int) -> None:
    """Mark these events' deliveries (as a worker's results would)."""
    with db.transaction() as session:
        session.execute(sa.update(WebhookDelivery)
                        .where(WebhookDelivery.outbox_id.in_(outbox_ids))
                        .values(status=status, delivered_at=utcnow()
                                if status == "delivered" else None))


def purge(db: Database, *urls: str, batch: int = 1000, **kw: Any) -> PurgeCounts:
    """The retention purge as the worker runs it (DAYS days)."""
    return purge_old_events(db, Retention(DAYS, batch), urls, **kw)


def ids(db: Database, table: str) -> list[int]:
    """The outbox ids left in ``table`` (outbox_events: id; deliveries: outbox_id)."""
    column = "id" if table == "outbox_events" else "outbox_id"
    with db.engine.connect() as conn:
        return list(conn.scalars(sa.text(f"SELECT {column} FROM {table} ORDER BY {column}")))
