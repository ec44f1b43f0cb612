"""The pull feed GET /api/v1/events?after=CURSOR and the deliveries list over the API."""

from __future__ import annotations

from app.lifecycle import Trigger, deprovision_user
from app.models import User
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, rows
from tests.lifecycle.support import make_leaver, roster


def _leave(db, tenant, name):
    leaver = make_leaver(db, tenant, name)
    with db.transaction() as session:
        deprovision_user(session, session.get(User, leaver.user_id), OPERATOR,
                         trigger=Trigger.operator)
    return leaver


def _all_pages(client, headers, limit=3, after=None):
    seen = []
    while True:
        query = f"limit={limit}" + (f"&after={after}" if after else "")
        page = client.get(f"/api/v1/events?{query}", headers=headers).get_json()
        seen.extend(page["items"])
        if not page["items"]:
            return seen, page["next_cursor"]
        after = page["next_cursor"]


def test_feed_pages_through_every_event_and_resumes_from_its_cursor(client, db, tenant):
    """Paging with after= yields each event once in order; the last cursor picks up new ones."""
    leaver = _leave(db, tenant, "first")
    portal = make_key(db, "portal", tenant.org)
    seen, cursor = _all_pages(client, portal.headers)
    expected = rows(db, "SELECT event_id FROM outbox_events WHERE organization_id = :o "
                        "ORDER BY id", o=tenant.org.id)
    assert [e["id"] for e in seen] == [r.event_id for r in expected]
    deprovisioned = next(e for e in seen if e["type"] == "user.deprovisioned")
    assert deprovisioned["data"]["manager"]["user_id"] == leaver.manager_id
    _leave(db, tenant, "second")
    more, _ = _all_pages(client, portal.headers, after=cursor)
    assert more
    assert {e["id"] for e in more}.isdisjoint({e["id"] for e in seen})


def test_feed_is_scoped_and_rejects_foreign_cursors(client, db, tenant, other_tenant):
    """A portal key sees only its organization; a cursor it did not get is a 400."""
    _leave(db, tenant, "mine")
    other = make_key(db, "portal", other_tenant.org)
    items = client.get("/api/v1/events", headers=other.headers).get_json()["items"]
    assert all(e["organization_id"] == other_tenant.org.id for e in items)
    bad = client.get("/api/v1/events?after=not-a-cursor", headers=other.headers)
    assert bad.status_code == 400
    assert bad.content_type.startswith("application/problem+json")
    auditor = make_key(db, "auditor", tenant.org)
    assert client.get("/api/v1/events", headers=auditor.headers).status_code == 403


def test_deliveries_are_visible_over_the_api(client, db, tenant, database_url):
    """After a worker round against a dead endpoint the deliveries list shows the attempts."""
    _leave(db, tenant, "api")
    roster(database_url, "worker", "--until-idle", ROSTER_WEBHOOKS__URLS="http://127.0.0.1:9/x",
           ROSTER_WEBHOOKS__SECRET="s3cret-for-tests", ROSTER_WEBHOOKS__TIMEOUT_SECONDS="1")
    operator = make_key(db, "operator")
    page = client.get("/api/v1/events/deliveries?status=pending",
                      headers=operator.headers).get_json()
    assert page["items"]
    assert page["items"][0]["attempts"] == 1
    assert page["items"][0]["last_error"]


def test_worker_writes_a_checkpoint_when_one_is_due(db, tenant, database_url):
    """`roster worker` signs the chain heads periodically (here: the first round)."""
    roster(database_url, "worker", "--until-idle")
    assert rows(db, "SELECT count(*) FROM audit_checkpoints WHERE chain = :c",
                c=tenant.org.id)[0][0] == 1
