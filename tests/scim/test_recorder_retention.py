"""The flight recorder's age bound holds with no SCIM traffic: `roster worker` prunes it.

It was pruned only as requests arrived, so a deployment whose IdPs went quiet (a customer
that disconnected its IdP, a directory disabled) kept the last bodies recorded (names,
emails, whatever the IdP sent) for good, past ``recorder.max_age_days``."""

from __future__ import annotations

from datetime import timedelta

from app.db import utcnow
from app.models.scim_ops import ScimRequest
from tests.conftest import rows
from tests.lifecycle.support import roster


def _record(db, tenant, path: str, days_ago: float) -> None:
    with db.transaction() as session:
        session.add(ScimRequest(directory_id=tenant.directory.id,
                                created_at=utcnow() - timedelta(days=days_ago),
                                method="POST", path=path, query="", status=201,
                                duration_ms=1.0, notes=[],
                                request_body='{"userName": "jane@example.com"}'))


def _paths(db) -> list[str]:
    return [r.path for r in rows(db, "SELECT path FROM scim_requests ORDER BY id")]


def test_the_worker_prunes_records_past_max_age_without_scim_requests(db, tenant,
                                                                      database_url):
    """Records older than recorder.max_age_days (14) go at the worker's round though no
    SCIM request arrived since; younger ones stay."""
    _record(db, tenant, "/Users/old", 15)
    _record(db, tenant, "/Users/recent", 1)
    roster(database_url, "worker", "--until-idle")
    assert _paths(db) == ["/Users/recent"]


def test_the_worker_prunes_by_the_configured_age_in_batches(db, tenant, database_url):
    """A lowered recorder.max_age_days applies to what is already recorded; more records
    than one batch holds all go in the one run."""
    for n in range(5):
        _record(db, tenant, f"/Users/{n}", 4)
    _record(db, tenant, "/Users/recent", 1)
    out = roster(database_url, "worker", "--until-idle", ROSTER_RECORDER__MAX_AGE_DAYS="3",
                 ROSTER_EVENTS__PURGE_BATCH_SIZE="2")
    assert _paths(db) == ["/Users/recent"]
    assert "pruned 5 SCIM flight recorder request(s) older than 3 day(s)" in out.output


def test_a_disabled_recorder_still_loses_its_old_records(db, tenant, database_url):
    """recorder.enabled=false records nothing new; what it recorded before still ages out."""
    _record(db, tenant, "/Users/old", 20)
    roster(database_url, "worker", "--until-idle", ROSTER_RECORDER__ENABLED="false")
    assert _paths(db) == []
