"""A URL added to webhooks.urls (or reset with `roster events reset-cursor`) reads the
retained outbox, up to events.retention_days of it: a bounded part per worker round.

Its whole history went into one transaction, page after page: a million retained events
were a million deliveries inserted while the transaction held SQLite's one write lock (every
SCIM write answered 503 past its busy timeout meanwhile) or, on PostgreSQL, the fan-out
cursors' row locks that every other worker's round waits for."""

from __future__ import annotations

from sqlalchemy import func, select

from app.db import utcnow
from app.events.delivery import (
    FAN_OUT_PAGE,
    FAN_OUT_ROUND_PAGES,
    WebhookConfig,
    fan_out,
    fan_out_due,
)
from app.events.outbox import emit_many
from app.models import OutboxEvent
from app.models.lifecycle import WebhookDelivery

URL = "http://127.0.0.1:9/hooks-new"


def test_a_new_url_reads_the_retained_outbox_a_bounded_part_per_round(db, tenant):
    """Each round fans out at most FAN_OUT_ROUND_PAGES pages to a URL; the next rounds go on
    where it stopped, and in the end every event has exactly one delivery."""
    bound = FAN_OUT_PAGE * FAN_OUT_ROUND_PAGES
    with db.transaction() as session:
        emit_many(session, organization_id=tenant.org.id, type="test.event",
                  events=[(f"a{n % 50}", {"n": n}) for n in range(bound + 7)])
    config = WebhookConfig(urls=(URL,), secret="s3cret-for-tests")
    rounds = []
    while True:
        with db.transaction() as session:
            rounds.append(fan_out(session, config, utcnow()))
        with db.transaction(readonly=True) as session:
            if not fan_out_due(session, config):
                break
        assert len(rounds) < 10
    assert rounds[0] == bound
    with db.transaction(readonly=True) as session:
        events = session.scalar(select(func.count()).select_from(OutboxEvent))
        deliveries = session.execute(select(func.count(), func.count(
            WebhookDelivery.outbox_id.distinct()))).one()
    assert sum(rounds) == events == deliveries[0] == deliveries[1]
