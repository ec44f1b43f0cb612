"""The retention purge and webhooks, against real HTTP receivers: a URL whose fan-out stands
before purged events holds (loudly) instead of skipping them, `roster events reset-cursor`
sends it the retained ones, a URL added after a purge gets the retained history, and a
pending delivery keeps its event; `roster events purge` and `roster worker` run the purge."""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from app.events.delivery import WebhookConfig
from app.events.worker import run, run_once
from tests.conftest import rows
from tests.events.receiver import SECRET, running_receiver
from tests.events.retention_support import age, ids, purge, write
from tests.lifecycle.support import roster


def _deliver(db, *urls: str) -> None:
    """`roster worker --until-idle`'s loop, in-process, to these URLs (real POSTs)."""
    config = WebhookConfig(urls=urls, secret=SECRET, timeout_seconds=2, lease_seconds=5,
                           retry_base_seconds=1, retry_max_seconds=1, poll_interval_ms=20)
    run(db, config, "test-worker", threading.Event(), until_idle=True)


def _names(receiver) -> list[str]:
    with receiver.lock:
        return [r["event"]["data"]["name"] for r in receiver.requests]


def test_a_url_behind_purged_events_holds_until_reset_then_gets_the_retained_ones(
        db, tenant, database_url, caplog):
    """B was out of webhooks.urls while events it had not received were purged. Put back,
    its fan-out holds and says so (the worker's log, `roster events purge`), sending nothing
    out of order; `roster events reset-cursor B` makes it read the retained events. A URL
    new after the purge gets the retained history at once."""
    with running_receiver() as a, running_receiver() as b, running_receiver() as c:
        write(db, tenant, "one", "two")
        _deliver(db, a.url, b.url)
        assert _names(b) == ["one", "two"]
        write(db, tenant, "three", "four", "five")
        _deliver(db, a.url)  # B taken out of webhooks.urls
        age(db)
        assert purge(db, a.url).events == 4  # one .. four; five, the newest, stays
        write(db, tenant, "six")

        with caplog.at_level(logging.ERROR, logger="roster.worker"):
            _deliver(db, a.url, b.url, c.url)
        assert _names(b) == ["one", "two"]  # held: three and four are gone
        assert f"webhook fan-out to {b.url} is held" in caplog.text
        assert _names(c) == ["five", "six"]  # new: the retained history, no hold
        assert _names(a) == ["one", "two", "three", "four", "five", "six"]
        said = roster(database_url, "events", "purge", ROSTER_WEBHOOKS__URLS=f"{a.url},{b.url}",
                      ROSTER_WEBHOOKS__SECRET=SECRET).output
        assert f"webhook fan-out to {b.url} is held behind purged events" in said

        assert "starts again" in roster(database_url, "events", "reset-cursor", b.url).output
        _deliver(db, a.url, b.url, c.url)
        assert _names(b) == ["one", "two", "five", "six"]
        assert _names(a) == ["one", "two", "three", "four", "five", "six"]  # nothing again
        roster(database_url, "events", "reset-cursor", "http://127.0.0.1:9/never", ok=False)


def test_a_pending_delivery_keeps_its_event_until_it_is_delivered(db, tenant, database_url):
    """The receiver is down for longer than the retention: `roster events purge` keeps the
    events of the pending deliveries (the second waits behind the first: one user's); once
    the receiver is back it gets them whole, in order, and the next purge takes them (but
    the newest event and delivery, which always stay)."""
    with running_receiver(fail_first=1) as receiver:
        waiting, newest = write(db, tenant, "waiting", "newest", aggregate="user-1")
        config = WebhookConfig(urls=(receiver.url,), secret=SECRET, retry_base_seconds=3600,
                               retry_max_seconds=3600, timeout_seconds=2, lease_seconds=5)
        run_once(db, config, "test-worker")  # the first POST fails: pending, retry later
        age(db)
        env = {"ROSTER_WEBHOOKS__URLS": receiver.url, "ROSTER_WEBHOOKS__SECRET": SECRET}
        out = roster(database_url, "events", "purge", **env).output
        assert "nothing to purge" in out
        assert ids(db, "outbox_events") == [waiting, newest]
        with db.transaction() as session:
            session.execute(sa.text("UPDATE webhook_deliveries SET next_attempt_at = created_at"))
        _deliver(db, receiver.url)
        assert _names(receiver)[-2:] == ["waiting", "newest"]
        assert receiver.requests[-2]["event"]["data"] == {"name": "waiting"}
        age(db)
        out = roster(database_url, "events", "purge", "--batch-size", "1", **env).output
        assert "purged 1 event(s) and 1 delivered webhook delivery(ies) older than 30" in out
        assert ids(db, "outbox_events") == [newest]


def test_roster_worker_purges_on_its_first_round(db, tenant, database_url):
    """`roster worker` runs the purge itself (first round, then every 10 minutes), with
    events.retention_days from the settings."""
    old = write(db, tenant, "old-1", "old-2", "old-3")
    age(db, 10)
    write(db, tenant, "young")
    roster(database_url, "worker", "--until-idle", ROSTER_EVENTS__RETENTION_DAYS="11")
    assert set(old) <= set(ids(db, "outbox_events"))
    out = roster(database_url, "worker", "--until-idle", ROSTER_EVENTS__RETENTION_DAYS="9")
    assert "purged 3 event(s)" in out.output
    assert not set(old) & set(ids(db, "outbox_events"))
    assert rows(db, "SELECT events FROM outbox_purges")[0].events == 3


def test_the_purge_command_checks_its_options_and_the_setting(db, database_url):
    """Bad options are usage errors; a retention of 0 purges nothing and says so; the
    commands are listed in `roster events --help`."""
    roster(database_url, "events", "purge", "--batch-size", "0", ok=False)
    roster(database_url, "events", "purge", "--retention-days", "-3", ok=False)
    out = roster(database_url, "events", "purge", ROSTER_EVENTS__RETENTION_DAYS="0").output
    assert "nothing purged" in out
    bad = roster(database_url, "events", "purge", ok=False,
                 ROSTER_EVENTS__PURGE_BATCH_SIZE="0").output
    assert "events.purge_batch_size must be positive" in bad
    listed = roster(database_url, "events", "--help").output
    assert "purge" in listed
    assert "reset-cursor" in listed


def test_reset_cursor_again_or_before_any_fan_out_is_done_not_an_error(db, tenant,
                                                                       database_url):
    """A reset is idempotent: run again (an operator re-running it), or for a URL of
    webhooks.urls that has no cursor yet, it exits 0 and says the URL already starts from
    the oldest event kept. A URL Roster knows nothing of (no cursor, no delivery, not in
    webhooks.urls: a typo) stays an error."""
    with running_receiver() as b:
        write(db, tenant, "one")
        _deliver(db, b.url)
        first = roster(database_url, "events", "reset-cursor", b.url).output
        assert "starts again from the oldest event kept" in first
        again = roster(database_url, "events", "reset-cursor", b.url).output
        assert "already starts from the oldest event kept" in again
        assert _names(b) == ["one"]
    configured = "http://127.0.0.1:9/configured"
    env = {"ROSTER_WEBHOOKS__URLS": configured, "ROSTER_WEBHOOKS__SECRET": SECRET}
    fresh = roster(database_url, "events", "reset-cursor", configured, **env).output
    assert "already starts from the oldest event kept" in fresh
    typo = roster(database_url, "events", "reset-cursor", "http://127.0.0.1:9/typo", ok=False,
                  **env).output
    assert "no fan-out cursor, delivery or webhooks.urls entry for http://127.0.0.1:9/typo" \
        in typo
    assert rows(db, "SELECT endpoint FROM webhook_cursors") == []


def _deliver_with(db, *receivers) -> None:
    """One worker loop to these receivers; a failure goes dead at once."""
    config = WebhookConfig(urls=tuple(r.url for r in receivers), secret=SECRET,
                           timeout_seconds=2, lease_seconds=5, dead_after_seconds=0,
                           poll_interval_ms=20)
    run(db, config, "test-worker", threading.Event(), until_idle=True)


def test_reset_cursor_does_not_send_again_what_a_url_received_of_a_kept_event(
        db, tenant, database_url):
    """README: after `reset-cursor` "an event it already has a delivery of is not sent
    again". A's delivered delivery was purged (delivered more than the retention ago) while
    its event stayed for B's dead letter: the reset sent A that event a second time."""
    with running_receiver() as a, running_receiver(fail_first=1000) as b:
        write(db, tenant, "one", "two")
        _deliver_with(db, a, b)
        assert _names(a) == ["one", "two"]
        assert rows(db, "SELECT count(*) AS n FROM webhook_deliveries "
                        "WHERE status = 'dead'")[0].n == 2
        age(db)
        purge(db, a.url, b.url)
        assert len(ids(db, "outbox_events")) == 2  # B's dead letters keep both
        roster(database_url, "events", "reset-cursor", a.url)
        _deliver_with(db, a)
        assert _names(a) == ["one", "two"]  # nothing again


def test_reset_cursor_does_not_send_the_newest_event_again(db, tenant, database_url):
    """The newest event always stays; its delivery to A (not the newest delivery: B's
    came after it) went after the retention, and a reset sent the event to A again."""
    with running_receiver() as a, running_receiver() as b:
        write(db, tenant, "one", "two")
        _deliver_with(db, a, b)
        age(db)
        purge(db, a.url, b.url)
        assert len(ids(db, "outbox_events")) == 1  # the newest
        roster(database_url, "events", "reset-cursor", a.url)
        _deliver_with(db, a, b)
        assert _names(a) == ["one", "two"]
        assert _names(b) == ["one", "two"]
