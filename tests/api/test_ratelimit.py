"""Rate limits per API key and per SCIM token: 429 with Retry-After, shared across nodes."""

from __future__ import annotations

import time

import pytest

from app import create_app
from app.settings import SettingsError
from tests.api.test_frame import assert_problem
from tests.conftest import app_overrides, rows


def _node(database_url: str, **limits: object):
    """One app instance ("node") counting in the shared database."""
    overrides = app_overrides(database_url)
    overrides["ratelimit"] = {"api": "100000/minute", "scim": "100000/minute",
                              "storage": "database", **limits}
    return create_app(overrides).test_client()


def test_api_key_over_its_limit_gets_429_problem_with_retry_after(database_url, db, keys,
                                                                  tenant):
    """The fourth request of a key limited to 3/minute is refused; other keys are not."""
    client = _node(database_url, api="3/minute")
    url = f"/api/v1/orgs/{tenant.org.id}"
    for _ in range(3):
        assert client.get(url, headers=keys["admin"].headers).status_code == 200
    response = client.get(url, headers=keys["admin"].headers)
    body = assert_problem(response, 429, "rate-limited")
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert "retry in" in body["detail"]
    assert client.get(url, headers=keys["auditor"].headers).status_code == 200


def test_scim_token_over_its_limit_gets_a_scim_429(database_url, db, tenant, other_tenant):
    """SCIM answers its own error format with status "429" and Retry-After."""
    client = _node(database_url, scim="2/minute")
    url = "/scim/v2/ServiceProviderConfig"
    for _ in range(2):
        assert client.get(url, headers=tenant.headers).status_code == 200
    response = client.get(url, headers=tenant.headers)
    assert response.status_code == 429
    assert response.mimetype == "application/scim+json"
    body = response.get_json(force=True)
    assert body["status"] == "429"
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert int(response.headers["Retry-After"]) >= 1
    assert client.get(url, headers=other_tenant.headers).status_code == 200


def test_two_nodes_on_one_database_share_the_count(database_url, db, keys, tenant):
    """Requests spread over two app instances count against one limit."""
    first, second = _node(database_url, api="4/minute"), _node(database_url, api="4/minute")
    url = f"/api/v1/orgs/{tenant.org.id}"
    statuses = [node.get(url, headers=keys["admin"].headers).status_code
                for node in (first, second, first, second, first, second)]
    assert statuses == [200, 200, 200, 200, 429, 429]
    stored = rows(db, "SELECT key, count FROM rate_limit_counters")
    assert len(stored) == 1
    assert stored[0][1] == 6
    assert keys["admin"].plaintext not in stored[0][0]


def test_a_node_leases_a_slice_of_the_limit_and_serves_it_locally(database_url, db, keys,
                                                                   tenant):
    """With 40/minute a node takes 2 requests per counter write (1/20 of the limit)."""
    client = _node(database_url, api="40/minute")
    url = f"/api/v1/orgs/{tenant.org.id}"
    counts = []
    for _ in range(3):
        assert client.get(url, headers=keys["admin"].headers).status_code == 200
        counts.append(rows(db, "SELECT count FROM rate_limit_counters")[0][0])
    assert counts == [2, 2, 4]


def test_two_nodes_leasing_slices_never_serve_more_than_the_limit(database_url, db, keys,
                                                                  tenant):
    """Slices leased by two nodes add up to the limit exactly; the rest is 429."""
    first, second = _node(database_url, api="40/minute"), _node(database_url, api="40/minute")
    url = f"/api/v1/orgs/{tenant.org.id}"
    statuses = [node.get(url, headers=keys["admin"].headers).status_code
                for _ in range(30) for node in (first, second)]
    assert statuses.count(200) == 40
    assert set(statuses[40:]) == {429}
    # Each node asked once more than the limit allowed and then refused locally.
    assert rows(db, "SELECT count FROM rate_limit_counters")[0][0] == 44


def test_a_new_window_starts_after_the_old_one_ends(database_url, db, keys, tenant):
    """With 2/second, the third request is refused and one a second later is allowed."""
    client = _node(database_url, api="2/second")
    url = f"/api/v1/orgs/{tenant.org.id}"
    assert [client.get(url, headers=keys["admin"].headers).status_code
            for _ in range(3)][-1] == 429
    time.sleep(1.1)
    assert client.get(url, headers=keys["admin"].headers).status_code == 200


def test_requests_without_a_credential_are_not_counted(database_url, db):
    """Anonymous requests (the OpenAPI description, 401s) never touch the counters."""
    client = _node(database_url, api="1/minute")
    for _ in range(3):
        assert client.get("/api/v1/openapi.json").status_code == 200
    assert rows(db, "SELECT count(*) FROM rate_limit_counters")[0][0] == 0


@pytest.mark.parametrize("limits", [
    {"api": "lots"}, {"storage": "redis"},
    # Several limits in one string: only the first was enforced, the others silently not.
    {"scim": "6000/minute;100/second"}, {"api": "600/minute, 20/second"},
    {"failed_auth": "60/minute;5/second"},
    # A window whose end a date cannot hold: every request with a credential was a 500.
    {"scim": "5/10000 years"}, {"failed_auth": "1/2 years"},
    # More than a 64-bit counter holds: every request with a credential was a 500.
    {"scim": "10000000000000000000000/second"}, {"api": f"{10**12 + 1}/hour"},
    # A window of zero: the limits library read it as one of its unit.
    {"scim": "10/0 minute"}, {"failed_auth": "5 per 00 seconds"}])
def test_bad_limit_settings_stop_the_app(database_url, limits):
    """A malformed limit or storage is a configuration error at start; so is a string of
    several limits, of which only the first would be counted."""
    with pytest.raises(SettingsError, match="ratelimit"):
        _node(database_url, **limits)


def test_a_node_keeps_a_bounded_number_of_leases_and_still_counts_every_request(
        database_url, db, tenant, monkeypatch):
    """Made-up tokens each lease under their own key: past MAX_LEASES a node forgets the
    oldest leases, and a forgotten key's next request leases again (the shared count still
    sees it), so memory stays bounded and no request goes uncounted."""
    from app.api import leases

    monkeypatch.setattr(leases, "MAX_LEASES", 8)
    client = _node(database_url, scim="2/minute")
    limits = client.application.extensions["roster.ratelimits"]
    url = "/scim/v2/ServiceProviderConfig"
    assert client.get(url, headers=tenant.headers).status_code == 200
    for n in range(30):
        client.get(url, headers={"Authorization": f"Bearer made-up-{n}"})
        assert len(limits.leased.leases) <= 8
        assert limits.leased.key_locks == {}  # a key's lock goes with its last request
    # The first token's lease is long forgotten; its second request is still its second.
    assert client.get(url, headers=tenant.headers).status_code == 200
    assert client.get(url, headers=tenant.headers).status_code == 429
    assert rows(db, "SELECT count(*) FROM rate_limit_counters "
                    "WHERE key LIKE '%/scim/%'")[0][0] == 31


def test_made_up_keys_on_the_public_description_write_no_counter(database_url, db):
    """The OpenAPI description checks no key: a bearer sent along (a stale one, or a new
    made-up one each time) is not counted. Each wrote a counter row of its own, and the
    failed-authentication limit never saw a failure to stop it."""
    client = _node(database_url, api="1/minute")
    for n in range(3):
        response = client.get("/api/v1/openapi.json",
                              headers={"Authorization": f"Bearer rk_made-up-{n}"})
        assert response.status_code == 200
    assert rows(db, "SELECT count(*) FROM rate_limit_counters")[0][0] == 0
