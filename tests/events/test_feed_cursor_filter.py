"""A pull-feed cursor continues the feed it came from: its organization and its type filter.

On SQLite a page that lists all its filter matches moves its cursor past every event
written so far (app/events/feed.py), the other types' and organizations' too. Used with
another filter, or another organization's key, such a cursor silently skipped events the
new feed had never listed: "no event is skipped" held only for a reader that never changed
its query. The feed refuses such a cursor instead (400, as a list does, app/api/pagination.py).
"""

from __future__ import annotations

import base64
import json

from app.events.outbox import emit
from tests.api.conftest import make_key


def _emit(db, org_id, name, type_="test.event"):
    with db.transaction() as session:
        emit(session, organization_id=org_id, type=type_, aggregate_id=name,
             payload={"name": name})


def _page(client, headers, query):
    response = client.get(f"/api/v1/events?{query}", headers=headers)
    return response


def test_a_cursor_of_a_type_filtered_feed_is_refused_without_the_filter(client, db, tenant):
    """A cursor from ``type=user.deprovisioned`` read on without the filter would skip every
    other event: it is a 400 problem naming the cause, and the filtered feed reads on."""
    portal = make_key(db, "portal", tenant.org)
    _emit(db, tenant.org.id, "a")
    _emit(db, tenant.org.id, "b", type_="test.other")
    filtered = _page(client, portal.headers, "type=test.other")
    assert filtered.status_code == 200
    cursor = filtered.get_json()["next_cursor"]
    plain = _page(client, portal.headers, f"after={cursor}")
    assert plain.status_code == 400, plain.get_json()
    assert plain.content_type.startswith("application/problem+json")
    assert "filter" in plain.get_json()["detail"]
    assert _page(client, portal.headers, f"after={cursor}&type=test.other").status_code == 200
    # The unfiltered feed from the start lists the event the filtered cursor passed.
    start = _page(client, portal.headers, "limit=200").get_json()["items"]
    assert "a" in [e["data"].get("name") for e in start]


def test_another_organizations_cursor_is_refused(client, db, tenant, other_tenant):
    """Org B's key with org A's cursor would read B's feed from A's position (skipping B's
    events written before it): a 400."""
    mine = make_key(db, "portal", tenant.org)
    theirs = make_key(db, "portal", other_tenant.org)
    _emit(db, other_tenant.org.id, "theirs-first")
    _emit(db, tenant.org.id, "mine")
    cursor = _page(client, mine.headers, "limit=200").get_json()["next_cursor"]
    response = _page(client, theirs.headers, f"after={cursor}")
    assert response.status_code == 400, response.get_json()
    assert response.content_type.startswith("application/problem+json")
    own = _page(client, theirs.headers, "limit=200").get_json()
    assert [e["data"]["name"] for e in own["items"] if e["type"] == "test.event"] \
        == ["theirs-first"]
    assert _page(client, theirs.headers, f"after={own['next_cursor']}").status_code == 200


def test_a_cursor_stored_before_cursors_named_their_feed_still_resumes(client, db, tenant):
    """A bare position (every cursor issued before this change) is still read."""
    portal = make_key(db, "portal", tenant.org)
    _emit(db, tenant.org.id, "one")
    _emit(db, tenant.org.id, "two")
    first = min(e["sequence"] for e in _page(client, portal.headers, "limit=200")
                .get_json()["items"] if e["type"] == "test.event")
    token = base64.urlsafe_b64encode(json.dumps([first]).encode()).decode().rstrip("=")
    later = _page(client, portal.headers, f"after={token}&limit=200")
    assert later.status_code == 200
    assert [e["data"]["name"] for e in later.get_json()["items"]
            if e["type"] == "test.event"] == ["two"]
