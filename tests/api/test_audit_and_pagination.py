"""GET /api/v1/audit (filters, scope) and cursor pagination stability."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from urllib.parse import quote

from app.db import utcnow
from app.directory.organizations import add_unit
from tests.api.test_frame import assert_problem
from tests.conftest import OPERATOR
from tests.lifecycle.support import roster


def _all_pages(client, url: str, headers: dict[str, str], cursor: str | None = None,
               ) -> list[dict]:
    items, pages = [], 0
    while True:
        sep = "&" if "?" in url else "?"
        page = client.get(f"{url}{sep}limit=3" + (f"&cursor={cursor}" if cursor else ""),
                          headers=headers).get_json()
        items.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return items
        assert pages < 100


def test_auditor_sees_only_its_organization(client, keys, tenant, other_tenant):
    """An auditor's list holds only its own org's events; naming another org is 404."""
    events = _all_pages(client, "/api/v1/audit", keys["auditor"].headers)
    assert events
    assert {e["organization_id"] for e in events} == {tenant.org.id}
    url = f"/api/v1/audit?organization={other_tenant.org.slug}"
    assert_problem(client.get(url, headers=keys["auditor"].headers), 404, "not-found")


def test_operator_sees_every_organization_and_filters(client, keys, tenant, other_tenant):
    """The operator sees both tenants; organization and action filters narrow the list."""
    everything = _all_pages(client, "/api/v1/audit", keys["operator"].headers)
    assert {tenant.org.id, other_tenant.org.id} <= {e["organization_id"] for e in everything}
    url = f"/api/v1/audit?organization={other_tenant.org.id}&action=directory:create"
    only = client.get(url, headers=keys["operator"].headers).get_json()["items"]
    assert [(e["organization_id"], e["action"]) for e in only] == \
        [(other_tenant.org.id, "directory:create")]
    roles = client.get(f"/api/v1/audit?organization={tenant.org.id}&action=role:*&limit=200",
                       headers=keys["operator"].headers).get_json()["items"]
    assert roles
    assert {e["action"] for e in roles} == {"role:create"}
    # Actions match case-sensitively, as action=directory:create does, on both databases
    # (SQLite's LIKE would ignore ASCII case); a % or _ in the prefix is literal.
    for prefix in ("ROLE:*", "Role:*", "r_le:*", "%:*"):
        url = f"/api/v1/audit?organization={tenant.org.id}&action={quote(prefix)}"
        assert client.get(url, headers=keys["operator"].headers).get_json()["items"] == [], \
            prefix


def test_time_range_filter(client, keys, tenant):
    """since/until bound the events by time; an inverted range is a 400 naming until."""
    headers = keys["operator"].headers
    later = (utcnow() + timedelta(hours=1)).isoformat()
    assert client.get(f"/api/v1/audit?since={later.replace('+', '%2B')}",
                      headers=headers).get_json()["items"] == []
    earlier = (utcnow() - timedelta(hours=1)).isoformat().replace("+", "%2B")
    assert client.get(f"/api/v1/audit?since={earlier}", headers=headers).get_json()["items"]
    response = client.get(f"/api/v1/audit?since={later.replace('+', '%2B')}&until={earlier}",
                          headers=headers)
    assert assert_problem(response, 400, "validation")["errors"][0]["field"] == "until"


def test_the_export_reads_since_and_until_as_the_list_does(client, keys, tenant):
    """/audit/export answered an inverted range with an empty 200 (the list: a 400 naming
    until) and refused a time without an offset that the list reads as UTC."""
    headers = keys["auditor"].headers
    response = client.get("/api/v1/audit/export?since=2026-01-02T00:00:00Z"
                          "&until=2026-01-01T00:00:00Z", headers=headers)
    problem = assert_problem(response, 400, "validation")
    assert problem["errors"] == [{"field": "until", "detail": "until must not be before since"}]
    naive = (utcnow() - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    listed = client.get(f"/api/v1/audit?since={naive}", headers=headers).get_json()["items"]
    exported = client.get(f"/api/v1/audit/export?since={naive}", headers=headers)
    assert exported.status_code == 200, exported.get_data(as_text=True)
    assert listed
    assert [json.loads(line)["event_id"] for line in exported.get_data(as_text=True)
            .splitlines()] == [e["event_id"] for e in listed]


def test_pages_are_stable_while_rows_are_added(db, client, keys, tenant):
    """Paging by cursor yields every row exactly once even if rows arrive between pages."""
    with db.transaction() as session:
        from app.models import Organization

        org = session.get(Organization, tenant.org.id)
        for i in range(7):
            add_unit(session, org, f"U{i}", "team", None, OPERATOR)
    url = f"/api/v1/orgs/{tenant.org.id}/units"
    headers = keys["admin"].headers
    first = client.get(f"{url}?limit=3", headers=headers).get_json()
    with db.transaction() as session:
        add_unit(session, session.get(Organization, tenant.org.id), "Late", "team", None,
                 OPERATOR)
    rest = _all_pages(client, url, headers, first["next_cursor"])
    names = [u["name"] for u in first["items"] + rest]
    assert names == [f"U{i}" for i in range(7)] + ["Late"]
    assert _all_pages(client, url, headers) == first["items"] + rest
    teams = client.get(f"{url}?kind=team&limit=200", headers=headers).get_json()["items"]
    assert len(teams) == 8
    assert client.get(f"{url}?kind=location", headers=headers).get_json()["items"] == []


def test_audit_pages_do_not_repeat_or_skip(client, keys, tenant, other_tenant):
    """The audit list paged 3 at a time equals the list in one page."""
    headers = keys["operator"].headers
    whole = client.get("/api/v1/audit?limit=200", headers=headers).get_json()["items"]
    assert _all_pages(client, "/api/v1/audit", headers) == whole
    assert [e["id"] for e in whole] == sorted(e["id"] for e in whole)


def test_tampered_cursor_is_a_400(client, keys, tenant):
    """A cursor of another shape answers 400 naming cursor, not 500."""
    for cursor in ("WyJ4Il0", "e30", "!!!", "W10"):
        response = client.get(f"/api/v1/audit?cursor={cursor}", headers=keys["operator"].headers)
        assert assert_problem(response, 400, "validation")["errors"][0]["field"] == "cursor"


def test_cursor_with_an_integer_beyond_64_bits_is_a_400(client, keys, tenant):
    """[2**63] or [-2**63 - 1] in an id-ordered list's cursor: SQLite's driver cannot bind
    it (OverflowError, a 500); no list issued it, so it is the 400 of a tampered cursor."""
    for values in ([2**63], [-2**63 - 1], [10**30]):
        cursor = base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")
        for url in ("/api/v1/audit", "/api/v1/events/deliveries"):
            response = client.get(f"{url}?cursor={cursor}", headers=keys["operator"].headers)
            problem = assert_problem(response, 400, "validation")
            assert problem["errors"] == [{"field": "cursor", "detail": problem["detail"]}]
    largest = base64.urlsafe_b64encode(json.dumps([2**63 - 1]).encode()).decode().rstrip("=")
    response = client.get(f"/api/v1/audit?cursor={largest}", headers=keys["operator"].headers)
    assert response.status_code == 200
    assert response.get_json()["items"] == []


def test_timestamps_at_the_edge_of_the_calendar_are_not_a_500(client, keys, tenant,
                                                               database_url):
    """0001-01-01T00:00+01:00 and 9999-12-31T23:59:59-01:00 have no UTC datetime: an
    audit since/until, a cursor or the CLI's --since failed with OverflowError (500, a
    traceback). They now compare as the calendar's ends."""
    headers = keys["auditor"].headers
    everything = client.get("/api/v1/audit", headers=headers).get_json()["items"]
    assert everything
    early, late = "0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-01:00"
    response = client.get(f"/api/v1/audit?since={early}&until={late}", headers=headers)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["items"] == everything
    assert client.get(f"/api/v1/deprovisions?until={late}", headers=headers).status_code == 200
    result = roster(database_url, "audit", "export", "--format", "csv",
                    "--since", "0001-01-01T00:00:00+01:00")
    assert "Traceback" not in result.output
