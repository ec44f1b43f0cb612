"""`roster events purge` says what it did: every count it prints is what it deleted, and a
run that deleted nothing says so (it printed "in 2 batch(es)" for the transactions that only
looked)."""

from __future__ import annotations

from tests.events.retention_support import age, fan_out_to, ids, set_status, write
from tests.lifecycle.support import roster

URL = "http://127.0.0.1:9/hook"
ENV = {"ROSTER_WEBHOOKS__URLS": URL, "ROSTER_WEBHOOKS__SECRET": "s3cret-for-tests"}


def test_an_empty_purge_says_nothing_was_purged(db, database_url):
    out = roster(database_url, "events", "purge", **ENV).output
    assert out.strip() == ("nothing to purge: no event or delivered webhook delivery older "
                           "than 30 day(s) may go")


def test_the_purge_counts_are_the_rows_deleted_and_the_batches_that_deleted_them(
        db, tenant, database_url):
    """Three delivered events aged past the retention, batches of one: two deliveries go
    in two batches, two events in two more (the newest event and delivery stay); the
    transactions that found nothing more to delete are no batches. A second run purges
    nothing and says so."""
    first, second, newest = write(db, tenant, "one", "two", "three")
    fan_out_to(db, URL)
    set_status(db, "delivered", first, second, newest)
    age(db)
    out = roster(database_url, "events", "purge", "--batch-size", "1", **ENV).output
    assert out.strip() == ("purged 2 event(s) and 2 delivered webhook delivery(ies) older "
                           "than 30 day(s) in 4 batch(es)")
    assert ids(db, "outbox_events") == [newest]
    assert ids(db, "webhook_deliveries") == [newest]
    again = roster(database_url, "events", "purge", **ENV).output
    assert again.startswith("nothing to purge")
    assert "batch" not in again
