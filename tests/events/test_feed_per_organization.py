"""An organization's feed (an org-bound portal key) and the retention purge: a quiet
organization whose reader polls is not expired by other organizations' events purged
behind it; one whose own unread events were purged still is (never a silent skip)."""

from __future__ import annotations

from tests.api.conftest import make_key
from tests.conftest import make_tenant
from tests.events.retention_support import age, purge, write
from tests.events.test_retention_feed import _names, _page, _read_all


def test_a_quiet_organizations_polling_reader_is_not_expired_by_others_purged_events(
        client, db, tenant):
    """Acme wrote one event, long ago, and its portal read it and polls on: every page is
    empty while Beta writes. Beta's old events are purged. Acme's reader missed nothing of
    its own, so it goes on (before: on SQLite its cursor stayed at Acme's last event, and
    Beta's purged events after it expired it with a 410)."""
    beta = make_tenant(db, "beta")
    acme_portal = make_key(db, "portal", tenant.org)
    write(db, tenant, "a1")
    names, cursor = _read_all(client, acme_portal)
    assert names == ["a1"]
    write(db, beta, "b1", "b2", "b3")
    names, cursor = _read_all(client, acme_portal, cursor)  # an empty poll
    assert names == []
    age(db)
    assert purge(db).events == 3  # a1, b1, b2 (b3 is the newest)

    polled = _page(client, acme_portal, cursor)
    assert polled.status_code == 200, polled.get_json()
    assert _names(polled) == []
    write(db, tenant, "a2")
    assert _read_all(client, acme_portal, polled.get_json()["next_cursor"])[0] == ["a2"]


def test_an_organizations_reader_behind_its_own_purged_events_is_still_expired(
        client, db, tenant):
    """Acme's reader read a0 of a0, a1 and stopped; Beta wrote meanwhile; a1 was purged
    with the rest: its cursor is a 410, never moved past a1."""
    beta = make_tenant(db, "beta")
    acme_portal = make_key(db, "portal", tenant.org)
    write(db, tenant, "a0", "a1")
    first = _page(client, acme_portal, limit=1)
    assert _names(first) == ["a0"]
    write(db, beta, "b1", "b2")
    age(db)
    assert purge(db).events == 3  # a0, a1, b1
    assert _page(client, acme_portal, first.get_json()["next_cursor"]).status_code == 410


def test_an_organizations_full_page_ends_at_its_last_event(client, db, tenant):
    """A full page can hold more: its cursor stays at its last event, and the next page
    starts right after it, the other organization's events in between skipped as before
    (they are not this reader's)."""
    beta = make_tenant(db, "beta")
    acme_portal = make_key(db, "portal", tenant.org)
    write(db, tenant, "a0")
    write(db, beta, "b0")
    write(db, tenant, "a1", "a2")
    first = _page(client, acme_portal, limit=2)
    assert _names(first) == ["a0", "a1"]
    write(db, beta, "b1")
    assert _read_all(client, acme_portal, first.get_json()["next_cursor"])[0] == ["a2"]
