"""`roster events deliveries`: what an operator reads when a receiver is failing."""

from __future__ import annotations

from dataclasses import replace

from app.events.delivery import WebhookConfig
from app.events.worker import run_once
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
