"""The pull feed and the retention purge: a cursor behind purged events is told so (410
cursor_expired, problem JSON) instead of silently skipping them; one that had read them,
or started after them, goes on."""

from __future__ import annotations

from app.api.pagination import encode_cursor
from tests.api.conftest import make_key
from tests.events.retention_support import age, fan_out_to, purge, set_status, write

HOOK = "http://127.0.0.1:9/hook"


def _page(client, key, after=None, limit=100):
    query = f"limit={limit}" + (f"&after={after}" if after else "")
    return client.get(f"/api/v1/events?{query}", headers=key.headers)


def _names(response):
    return [e["data"]["name"] for e in response.get_json()["items"]]


def _read_all(client, key, after=None):
    """Page through the feed to its end; the names read and the last cursor."""
    names = []
    while True:
        page = _page(client, key, after, limit=2)
        assert page.status_code == 200, page.get_json()
        after = page.get_json()["next_cursor"]
        if not page.get_json()["items"]:
            return names, after
        names += _names(page)


def test_a_cursor_behind_purged_events_is_a_410_cursor_expired_problem(client, db, tenant):
    """The portal read one event and stopped; the rest were purged before it came back. Its
    cursor is refused with 410 and how to resync; without a cursor it reads what is kept,
    and its new cursor goes on."""
    portal = make_key(db, "portal", tenant.org)
    write(db, tenant, "one", "two", "three")
    first = _page(client, portal, limit=1)
    assert _names(first) == ["one"]
    cursor = first.get_json()["next_cursor"]
    age(db)
    assert purge(db).events == 2  # the newest event always stays

    expired = _page(client, portal, cursor)

    assert expired.status_code == 410
    assert expired.content_type.startswith("application/problem+json")
    problem = expired.get_json()
    assert problem["type"].endswith("/cursor-expired")
    assert problem["status"] == 410
    assert problem["detail"].startswith("cursor_expired:")
    assert "without 'after'" in problem["detail"]
    assert problem["request_id"]
    again = _page(client, portal)
    assert _names(again) == ["three"]
    write(db, tenant, "four")
    assert _names(_page(client, portal, again.get_json()["next_cursor"])) == ["four"]
    assert _page(client, portal, cursor).status_code == 410  # and stays expired


def test_a_cursor_that_read_everything_purged_goes_on(client, db, tenant):
    """A portal that keeps up never notices the purge: its cursor had passed every event
    deleted, so the next page simply brings the new ones."""
    portal = make_key(db, "portal", tenant.org)
    write(db, tenant, "one", "two", "three")
    names, cursor = _read_all(client, portal)
    assert names == ["one", "two", "three"]
    age(db)
    assert purge(db).events == 2
    write(db, tenant, "four")
    assert _read_all(client, portal, cursor)[0] == ["four"]


def test_a_reader_started_after_a_purge_is_not_expired_by_what_it_kept(client, db, tenant):
    """An old event kept for its pending delivery sits below purged ones: a reader that
    starts afresh reads it, then on past the gap it never had to read, without a 410; a
    later purge of that event, read already, expires nothing."""
    portal = make_key(db, "portal", tenant.org)
    kept, gone_1, gone_2 = write(db, tenant, "kept", "gone-1", "gone-2")
    fan_out_to(db, HOOK)
    set_status(db, "delivered", gone_1, gone_2)
    age(db)
    write(db, tenant, "young")
    assert purge(db, HOOK).events == 2
    first = _page(client, portal, limit=1)
    assert _names(first) == ["kept"]
    rest, cursor = _read_all(client, portal, first.get_json()["next_cursor"])
    assert rest == ["young"]
    set_status(db, "delivered", kept)
    assert purge(db, HOOK).events == 1
    write(db, tenant, "later")
    assert _read_all(client, portal, cursor)[0] == ["later"]


def test_a_cursor_naming_a_purge_that_never_was_is_a_400(client, db, tenant):
    """A cursor's purge epoch is one this feed issued: a later one is no cursor of it."""
    portal = make_key(db, "portal", tenant.org)
    response = _page(client, portal, encode_cursor([0, 7]))
    assert response.status_code == 400
    assert response.content_type.startswith("application/problem+json")


def test_the_openapi_description_lists_the_410(client):
    """The feed's 410 is part of its documented answers."""
    spec = client.get("/api/v1/openapi.json").get_json()
    responses = spec["paths"]["/api/v1/events"]["get"]["responses"]
    assert "410" in responses
