"""The retention purge of the outbox and the webhook deliveries (events.retention_days):
exactly what is old and no longer needed goes, in bounded batches; pending and dead
deliveries, their events, and events a configured URL has yet to read stay."""

from __future__ import annotations

import sqlalchemy as sa

from app.db import utcnow
from app.events.delivery import HELD, WebhookConfig, record_result, redeliver
from tests.conftest import rows
from tests.events.retention_support import age, fan_out_to, ids, purge, set_status, write

HOOK = "http://127.0.0.1:9/hook"
OTHER = "http://127.0.0.1:9/other"


def test_purge_deletes_old_delivered_events_and_keeps_pending_dead_and_young(db, tenant):
    """Old events all of whose deliveries were delivered go with them; an old event with a
    pending or a dead delivery (to any URL) stays, with every delivery it has; young ones
    stay; and the batch is recorded as a watermark."""
    done, pending, dead, other_dead = write(db, tenant, "done", "pending", "dead", "x")
    fan_out_to(db, HOOK, OTHER)
    set_status(db, "delivered", done, pending, dead, other_dead)
    set_status(db, "pending", pending)
    set_status(db, "dead", dead)
    with db.transaction() as session:  # other_dead: delivered to HOOK, dead to OTHER
        session.execute(sa.text("UPDATE webhook_deliveries SET status = 'dead' "
                                "WHERE outbox_id = :i AND endpoint = :e"),
                        {"i": other_dead, "e": OTHER})
    age(db)
    young = write(db, tenant, "young")[0]
    fan_out_to(db, HOOK, OTHER)
    set_status(db, "delivered", young)

    counts = purge(db, HOOK, OTHER)

    assert ids(db, "outbox_events") == [pending, dead, other_dead, young]
    # The pending and dead deliveries stayed, and so did the young. The delivered one of a
    # kept old event stays with it (delivered 31 days ago): it went, and a reset of HOOK's
    # cursor then sent HOOK the event again (test_retention_webhooks).
    left = rows(db, "SELECT outbox_id, endpoint, status FROM webhook_deliveries "
                    "ORDER BY outbox_id, endpoint")
    assert [(r.outbox_id, r.status) for r in left] == [
        (pending, "pending"), (pending, "pending"), (dead, "dead"), (dead, "dead"),
        (other_dead, "delivered"), (other_dead, "dead"), (young, "delivered"),
        (young, "delivered")]
    assert counts.events == 1
    assert counts.deliveries == 2
    marks = rows(db, "SELECT max_id, events FROM outbox_purges")
    assert [(m.max_id, m.events) for m in marks] == [(done, 1)]


def test_events_a_configured_url_has_not_read_yet_stay(db, tenant):
    """A URL of webhooks.urls whose fan-out has not reached an old event (a worker that was
    down, a URL just added) keeps it: the purge waits for the fan-out, then takes it."""
    first, second = write(db, tenant, "a", "b")
    fan_out_to(db, HOOK)
    set_status(db, "delivered", first, second)
    age(db)
    assert purge(db, HOOK, OTHER).events == 0  # OTHER has no cursor: it read nothing
    assert ids(db, "outbox_events") == [first, second]
    fan_out_to(db, HOOK, OTHER)
    set_status(db, "delivered", first, second)
    age(db)
    assert purge(db, HOOK, OTHER).events == 1
    assert ids(db, "outbox_events") == [second]  # the newest always stays


def test_a_dead_letter_and_the_deliveries_held_behind_it_stay_and_redeliver_in_order(
        db, tenant):
    """The order per aggregate rests on dead letters: the dead head and the later events
    held behind it keep their events; earlier delivered ones go; redeliver still queues the
    whole run, in order."""
    config = WebhookConfig(urls=(HOOK,), secret="s3cret-for-tests", dead_after_seconds=0)
    early, head, later = write(db, tenant, "early", "head", "later", aggregate="user-1")
    fan_out_to(db, HOOK)
    set_status(db, "delivered", early)
    with db.transaction() as session:
        delivery = session.scalar(sa.text("SELECT id FROM webhook_deliveries "
                                          "WHERE outbox_id = :i"), {"i": head})
        record_result(session, config, delivery, worker_id="test-worker", ok=False,
                      status=500, error="down", now=utcnow())
    held = rows(db, "SELECT status, last_error FROM webhook_deliveries WHERE outbox_id = :i",
                i=later)[0]
    assert (held.status, held.last_error) == ("dead", HELD.format(delivery))
    age(db)
    purge(db, HOOK)
    assert ids(db, "outbox_events") == [head, later]
    with db.transaction() as session:
        queued = redeliver(session, delivery, utcnow())
        assert [d.outbox_id for d in queued] == [head, later]


def test_batches_are_bounded_and_a_bounded_run_says_more_is_left(db, tenant):
    """Each transaction deletes at most purge_batch_size events (one watermark per batch);
    a run capped at max_batches stops there and reports work left; the next run ends it."""
    written = write(db, tenant, *[f"e{i}" for i in range(10)])
    age(db)
    first = purge(db, batch=3, max_batches=2)
    assert first.more  # one batch of deliveries (none), one of events
    assert first.events == 3
    rest = purge(db, batch=3)
    assert not rest.more
    assert first.events + rest.events == 9
    marks = rows(db, "SELECT max_id, events FROM outbox_purges ORDER BY id")
    assert [m.events for m in marks] == [3, 3, 3]
    assert [m.max_id for m in marks] == [written[2], written[5], written[8]]
    assert ids(db, "outbox_events") == [written[9]]


def test_the_newest_event_stays_so_no_id_is_handed_out_again(db, tenant):
    """SQLite gives a new row the id after the largest present: had the purge deleted the
    newest event, the next would get its id again, and a cursor past it skip the new one."""
    _older, newest = write(db, tenant, "older", "newest")
    age(db)
    purge(db)
    assert ids(db, "outbox_events") == [newest]
    assert write(db, tenant, "next")[0] > newest


def test_a_retention_of_zero_purges_nothing(db, tenant):
    """events.retention_days = 0 keeps every event (the purge is off)."""
    from app.events.retention import Retention, purge_old_events

    write(db, tenant, "kept")
    age(db, 400)
    assert purge_old_events(db, Retention(0), ()).events == 0
    assert len(ids(db, "outbox_events")) == 1


def _plan(db, statement: str) -> str:
    """The query plan of ``statement`` with sequential scans discouraged (PostgreSQL picks
    them for any table this small; an index it cannot use is still not used)."""
    with db.engine.begin() as conn:
        if db.dialect == "postgresql":
            conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            return "\n".join(conn.scalars(sa.text(f"EXPLAIN {statement}")))
        return "\n".join(r[-1] for r in conn.execute(sa.text(f"EXPLAIN QUERY PLAN {statement}")))


def test_the_purges_and_the_dead_letter_hold_find_their_rows_by_index(db, tenant):
    """The SSO purge's deletes (ended sessions, expired tokens: app/sso/maintenance.py), the
    delivered deliveries' purge and the fan-out's dead-letter probe use an index, not a
    scan of the table."""
    cases = {
        "DELETE FROM login_sessions WHERE revoked_at <= '2026-01-01' "
        "OR expires_at <= '2026-01-01'": ("ix_login_sessions_revoked_at",
                                          "ix_login_sessions_expires_at"),
        "DELETE FROM issued_tokens WHERE expires_at <= '2026-01-01'":
            ("ix_issued_tokens_expires_at",),
        "SELECT id FROM webhook_deliveries WHERE status = 'delivered' "
        "AND delivered_at < '2026-01-01' LIMIT 10": ("ix_webhook_deliveries_status_delivered_at",),
        # Any index on status answers the probe with one seek.
        "SELECT EXISTS (SELECT 1 FROM webhook_deliveries WHERE status = 'dead')": (),
        "SELECT aggregate_id, min(id) FROM webhook_deliveries WHERE status = 'dead' "
        "AND endpoint = 'h' AND aggregate_id IN ('a', 'b') GROUP BY aggregate_id":
            ("ix_webhook_deliveries_dead",),
    }
    for statement, indexes in cases.items():
        plan = _plan(db, statement)
        assert all(index in plan for index in indexes), (statement, plan)
        assert "Seq Scan" not in plan, (statement, plan)
        assert not any(line.startswith("SCAN") and "CONSTANT ROW" not in line
                       for line in plan.splitlines()), (statement, plan)
