"""Rate-limit counters of ended windows go at `roster worker`'s round, with no request
arriving: they were deleted only now and then as new windows began, so a quiet deployment
kept the keys of its last windows for good, the client addresses of failed
authentications (`ratelimit.failed_auth`) among them."""

from __future__ import annotations

from datetime import timedelta

from app.db import utcnow
from app.models.api import RateLimitCounter
from tests.conftest import rows
from tests.lifecycle.support import roster


def test_the_worker_deletes_counters_of_windows_ended_over_an_hour_ago(db, database_url):
    """An address counted two hours ago goes; a window that ended ten minutes ago and a
    current one stay (the counters purge themselves an hour after their window)."""
    now = utcnow()
    with db.transaction() as session:
        for key, ended in (("failed_auth:203.0.113.9:60/minute", timedelta(hours=2)),
                           ("failed_auth:198.51.100.7:60/minute", timedelta(minutes=10)),
                           ("failed_auth:192.0.2.1:60/minute", -timedelta(seconds=30))):
            session.add(RateLimitCounter(key=key, count=3, expires_at=now - ended))
    out = roster(database_url, "worker", "--until-idle", ROSTER_EVENTS__PURGE_BATCH_SIZE="1")
    kept = sorted(r.key for r in rows(db, "SELECT key FROM rate_limit_counters"))
    assert kept == ["failed_auth:192.0.2.1:60/minute", "failed_auth:198.51.100.7:60/minute"]
    assert "deleted 1 rate-limit counter(s) of ended windows" in out.output
