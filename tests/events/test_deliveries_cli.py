"""`roster events deliveries`: what an operator reads when a receiver is failing."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from app.events.delivery import WebhookConfig
from app.events.worker import run_once
from app.models.lifecycle import WebhookDelivery
from tests.conftest import rows
from tests.events.receiver import SECRET, running_receiver
from tests.events.test_webhooks import _leavers
from tests.lifecycle.support import roster


def _config(url: str) -> WebhookConfig:
    return replace(WebhookConfig(urls=(url,), secret=SECRET), retry_base_seconds=600,
                   retry_max_seconds=600)


def _listed_ids(output: str) -> list[int]:
    return [int(line.split()[0]) for line in output.splitlines()
            if line.split() and line.split()[0].isdigit()]


def test_limit_lists_the_newest_deliveries_first(db, tenant, database_url):
    """`--limit N` is documented as "at most this many, newest first": it listed the N
    oldest, oldest first, so the dead letters of today's outage hid behind last month's."""
    _leavers(db, tenant, 2)
    with running_receiver() as receiver:
        while run_once(db, _config(receiver.url), "test-worker"):
            pass
    ids = [r.id for r in rows(db, "SELECT id FROM webhook_deliveries ORDER BY id")]
    assert len(ids) >= 3
    listed = _listed_ids(roster(database_url, "events", "deliveries", "--limit", "2").output)
    assert listed == [ids[-1], ids[-2]]
    every = _listed_ids(roster(database_url, "events", "deliveries",
                               "--status", "delivered").output)
    assert every == sorted(ids, reverse=True)


def test_a_redelivered_dead_letter_keeps_its_clock(db, tenant, database_url):
    """README and config/defaults.toml: a redelivered delivery keeps its dead_after_seconds
    clock (from when it was queued), so one that fails again goes dead at once. Redeliver
    reset its created_at to now: it was retried for another whole day, and the list showed
    the redelivery's time as when the event was queued."""
    _leavers(db, tenant, 1)
    with running_receiver(fail_first=1000) as receiver:
        config = _config(receiver.url)
        run_once(db, replace(config, dead_after_seconds=0), "test-worker")
        dead = rows(db, "SELECT id FROM webhook_deliveries WHERE status = 'dead' "
                        "AND attempts > 0")
        assert len(dead) == 1
        with db.transaction() as session:  # queued two days ago: past the day it had
            delivery = session.get(WebhookDelivery, dead[0].id)
            delivery.created_at -= timedelta(days=2)
            queued_at = delivery.created_at
        listed = roster(database_url, "events", "redeliver", str(dead[0].id)).output
        assert f"delivery {dead[0].id} queued" in listed
        with db.transaction() as session:
            delivery = session.get(WebhookDelivery, dead[0].id)
            assert (delivery.status, delivery.created_at) == ("pending", queued_at)
        run_once(db, config, "test-worker")  # dead_after_seconds: one day
    assert rows(db, "SELECT status, attempts FROM webhook_deliveries WHERE id = :i",
                i=dead[0].id)[0] == ("dead", 2)


def test_redelivering_a_delivery_being_posted_does_not_send_it_twice(db, tenant,
                                                                       database_url):
    """`roster events redeliver` of a pending delivery a worker is posting (a slow receiver,
    a retry the operator wants now) cleared that worker's lease: a second worker claimed it
    and its user's later events at once and posted them beside the first, out of order with
    what the first worker went on to post."""
    import threading

    _leavers(db, tenant, 1)
    with running_receiver(hang_on=1) as receiver:
        config = _config(receiver.url)
        first = threading.Thread(target=run_once, args=(db, config, "worker-one"))
        first.start()
        try:
            assert receiver.hanging.wait(30)
            posting = receiver.ids()[0]
            held = rows(db, "SELECT id FROM webhook_deliveries WHERE event_id = :e",
                        e=posting)[0].id
            roster(database_url, "events", "redeliver", str(held))
            run_once(db, config, "worker-two")
            assert receiver.ids() == [posting]
        finally:
            receiver.release.set()
            first.join(30)
    assert rows(db, "SELECT status FROM webhook_deliveries WHERE id = :i",
                i=held)[0][0] == "delivered"


def test_a_redelivered_old_event_does_not_take_a_run_another_worker_is_posting(
        db, tenant, database_url):
    """A delivered event of a user queued again while a worker posts that user's newer
    events: the worker that claims it took the newer ones too as its followers, leased by
    the first worker or not, and posted them a second time beside it."""
    import threading

    from app.events.outbox import emit

    def _emit(name: str) -> None:
        with db.transaction() as session:
            emit(session, organization_id=tenant.org.id, type="test.event",
                 aggregate_id="user-1", payload={"name": name})

    _emit("old")
    with running_receiver() as receiver:
        config = _config(receiver.url)
        while run_once(db, config, "test-worker"):
            pass
        old = rows(db, "SELECT id, event_id FROM webhook_deliveries "
                       "WHERE status = 'delivered' AND aggregate_id = 'user-1'")[0]
        _emit("new-1")
        _emit("new-2")
        receiver.hang_on = len(receiver.ids()) + 1
        first = threading.Thread(target=run_once, args=(db, config, "worker-one"))
        first.start()
        try:
            assert receiver.hanging.wait(30)
            roster(database_url, "events", "redeliver", str(old.id))
            run_once(db, config, "worker-two")
            posted = receiver.ids()[1:]
        finally:
            receiver.release.set()
            first.join(30)
        new = [r.event_id for r in rows(
            db, "SELECT event_id FROM webhook_deliveries WHERE aggregate_id = 'user-1' "
                "AND id > :i ORDER BY id", i=old.id)]
        assert posted == [new[0], old.event_id]
        assert receiver.ids()[1:] == [new[0], old.event_id, new[1]]


def test_redelivering_to_a_url_no_longer_configured_says_it_waits(db, tenant,
                                                                  database_url):
    """A dead letter of a URL since taken out of webhooks.urls is queued, but no worker
    sends it (README: such a URL gets nothing more): the command said only "queued"."""
    _leavers(db, tenant, 1)
    with running_receiver(fail_first=1000) as receiver:
        run_once(db, replace(_config(receiver.url), dead_after_seconds=0), "test-worker")
        dead = rows(db, "SELECT id FROM webhook_deliveries WHERE status = 'dead' "
                        "AND attempts > 0")[0]
        said = roster(database_url, "events", "redeliver", str(dead.id),
                      ROSTER_WEBHOOKS__URLS="http://127.0.0.1:9/elsewhere",
                      ROSTER_WEBHOOKS__SECRET=SECRET).output
        assert "not in webhooks.urls" in said
        said = roster(database_url, "events", "redeliver", str(dead.id),
                      ROSTER_WEBHOOKS__URLS=receiver.url, ROSTER_WEBHOOKS__SECRET=SECRET).output
        assert "not in webhooks.urls" not in said


def test_dead_and_another_status_at_once_is_a_usage_error(db, tenant, database_url):
    """`--dead --status delivered` listed the dead letters without a word: the operator
    who asked for delivered ones read dead ones as delivered. Conflicting options are a
    usage error (exit 2); `--dead --status dead` says the same twice and is fine."""
    _leavers(db, tenant, 1)
    with running_receiver() as receiver:
        while run_once(db, _config(receiver.url), "test-worker"):
            pass
    refused = roster(database_url, "events", "deliveries", "--dead", "--status", "delivered",
                     ok=False)
    assert refused.exit_code == 2
    assert "--dead" in refused.output
    assert "--status delivered" in refused.output
    assert "(none)" not in refused.output
    same = roster(database_url, "events", "deliveries", "--dead", "--status", "dead")
    assert same.output.strip() == "(none)"


def test_the_next_attempt_shows_its_date(db, tenant, database_url):
    """The "next" column showed only a time of day: a retry due tomorrow at 09:00 read as
    due this morning."""
    _leavers(db, tenant, 1)
    with running_receiver(fail_first=1000) as receiver:
        run_once(db, _config(receiver.url), "test-worker")
    with db.transaction() as session:
        pending = session.get(WebhookDelivery, rows(
            db, "SELECT id FROM webhook_deliveries WHERE attempts > 0")[0].id)
        pending.next_attempt_at = pending.next_attempt_at.replace(
            hour=9, minute=0, second=0, microsecond=0) + timedelta(days=1)
        due = pending.next_attempt_at
    listed = roster(database_url, "events", "deliveries", "--status", "pending").output
    assert f"{due:%Y-%m-%d %H:%M:%S}" in listed
