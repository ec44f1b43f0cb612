"""A list's cursor continues that list only: a cursor of another list (another route, or
the same route of another organization) is the 400 of a cursor the list did not issue,
not a page of the other list started at a foreign position."""

from __future__ import annotations

import base64
import json

from app.directory.organizations import add_unit
from tests.api.test_frame import assert_problem
from tests.conftest import OPERATOR


def _units(db, *tenants) -> None:
    with db.transaction() as session:
        for tenant in tenants:
            org = session.merge(tenant.org)
            for name in ("A", "B", "C"):
                add_unit(session, org, name, "department", None, OPERATOR)


def _cursor(client, url: str, headers) -> str:
    page = client.get(f"{url}?limit=1", headers=headers).get_json()
    assert page["next_cursor"], page
    return page["next_cursor"]


def _after_first(client, url: str, headers) -> list[str]:
    """The ids of the list past its first item, read in one page."""
    return [u["id"] for u in client.get(f"{url}?limit=200", headers=headers)
            .get_json()["items"]][1:]


def test_a_cursor_of_another_list_is_a_400(client, keys, db, tenant, other_tenant):
    """The organizations list's cursor was taken by the units and API keys lists (both
    ordered by creation time and id), and one organization's units cursor by another's
    units: each answered a page from wherever that position fell, skipping rows unseen.
    Now each is refused, naming ``cursor``; the cursor still continues its own list, by
    slug as by id."""
    _units(db, tenant, other_tenant)
    operator = keys["operator"].headers
    orgs = _cursor(client, "/api/v1/orgs", operator)
    units = _cursor(client, f"/api/v1/orgs/{tenant.org.id}/units", operator)
    for url, cursor in ((f"/api/v1/orgs/{tenant.org.id}/units", orgs),
                        ("/api/v1/apikeys", orgs),
                        (f"/api/v1/orgs/{other_tenant.org.id}/units", units),
                        (f"/api/v1/orgs/{tenant.org.id}/roles", units)):
        problem = assert_problem(client.get(f"{url}?cursor={cursor}", headers=operator),
                                 400, "validation")
        assert [e["field"] for e in problem["errors"]] == ["cursor"], url
    rest = _after_first(client, f"/api/v1/orgs/{tenant.org.id}/units", operator)
    for ref in (tenant.org.id, tenant.org.slug):
        page = client.get(f"/api/v1/orgs/{ref}/units?limit=5&cursor={units}", headers=operator)
        assert page.status_code == 200, page.get_json()
        assert [u["id"] for u in page.get_json()["items"]] == rest


def test_a_cursor_issued_before_cursors_named_their_list_still_works(client, keys, db,
                                                                     tenant):
    """A cursor of the previous release (the bare ordering values) still continues a list,
    so a client paging through a deploy does not have to start again."""
    _units(db, tenant)
    url = f"/api/v1/orgs/{tenant.org.id}/units"
    first = client.get(f"{url}?limit=1", headers=keys["operator"].headers).get_json()
    created_at = first["items"][0]["created_at"]
    old = base64.urlsafe_b64encode(json.dumps(
        [created_at, first["items"][0]["id"]], separators=(",", ":")).encode()
    ).decode().rstrip("=")
    page = client.get(f"{url}?limit=5&cursor={old}", headers=keys["operator"].headers)
    assert page.status_code == 200, page.get_json()
    assert [u["id"] for u in page.get_json()["items"]] == \
        _after_first(client, url, keys["operator"].headers)
