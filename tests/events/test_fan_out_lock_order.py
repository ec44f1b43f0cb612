"""Two workers whose ``webhooks.urls`` list the same URLs in different orders (two nodes
configured by hand) fan out at once on PostgreSQL: each locks the URLs' cursors in one
canonical order, so neither waits for a cursor while holding one the other waits for.

Before, each locked the cursors in its own configuration order: one worker held A's cursor
waiting for B's, the other held B's waiting for A's, and PostgreSQL aborted one of them as a
deadlock victim (the worker retried the round, logging a transient error).
"""

from __future__ import annotations

import pytest

from app.db import Database, utcnow
from app.events import emit
from app.events.delivery import WebhookConfig, fan_out
from tests.conftest import rows
from tests.lockwait import held, started

FIRST, SECOND = "http://127.0.0.1:9/a-hook", "http://127.0.0.1:9/b-hook"


@pytest.fixture(autouse=True)
def _postgresql_only(db):
    if db.dialect != "postgresql":
        pytest.skip("row locks and concurrent writers are PostgreSQL's (SQLite has one)")


def _fan_out(db: Database, urls: tuple[str, ...]) -> int:
    with db.transaction() as session:
        return fan_out(session, WebhookConfig(urls=urls, secret="s3cret-for-tests"), utcnow())


def test_differently_ordered_urls_fan_out_at_once_without_a_deadlock(db, tenant):
    """Both workers wait on an event's row (a writer holds it) after their first cursor:
    released together, each fans out both URLs, once, and neither is a deadlock victim."""
    with db.transaction() as session:
        emit(session, organization_id=tenant.org.id, type="test.event", aggregate_id="u1",
             payload={})
    for url in (FIRST, SECOND):  # both cursors exist: the race is on their locks alone
        _fan_out(db, (url,))
    with db.transaction() as session:
        emit(session, organization_id=tenant.org.id, type="test.event", aggregate_id="u2",
             payload={})
    newest = rows(db, "SELECT max(id) FROM outbox_events")[0][0]
    # A delivery's insert takes a key-share lock on its event: held FOR UPDATE here, each
    # worker stops at its first URL's first insert, holding that URL's cursor.
    with held(db, "SELECT id FROM outbox_events WHERE id = :i FOR UPDATE", i=newest):
        one, one_out = started(db, lambda: _fan_out(db, (FIRST, SECOND)))
        two, two_out = started(db, lambda: _fan_out(db, (SECOND, FIRST)), waiters=2)
    one.join(30)
    two.join(30)
    assert not isinstance(one_out.get("result"), BaseException), one_out
    assert not isinstance(two_out.get("result"), BaseException), two_out
    assert one_out["result"] + two_out["result"] == 2
    assert sorted(r[0] for r in rows(
        db, "SELECT endpoint FROM webhook_deliveries WHERE outbox_id = :i", i=newest)) == \
        [FIRST, SECOND]
