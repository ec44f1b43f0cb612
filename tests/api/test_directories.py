"""Directories and their SCIM tokens over the API: create, list, disable, rotate, revoke."""

from __future__ import annotations

from tests.api.test_frame import assert_problem
from tests.conftest import database_locked, rows


def test_admin_creates_a_directory_and_gets_its_token_once(db, client, keys, tenant):
    """POST directories answers the SCIM URL and a token that authenticates SCIM."""
    base = f"/api/v1/orgs/{tenant.org.slug}/directories"
    response = client.post(base, json={"vendor": "entra", "name": "Entra prod"},
                           headers=keys["admin"].headers)
    assert response.status_code == 201, response.data
    body = response.get_json()
    assert body["name"] == "Entra prod"
    assert body["status"] == "active"
    assert body["scim_base_url"] == "http://roster.test/scim/v2"
    token = body["token"]["token"]
    assert token.startswith("rst_")
    assert body["token"]["state"] == "valid"
    scim = client.get("/scim/v2/ServiceProviderConfig",
                      headers={"Authorization": f"Bearer {token}"})
    assert scim.status_code == 200
    again = client.get(f"{base}/{body['id']}", headers=keys["admin"].headers).get_json()
    assert "token" not in again
    actors = rows(db, "SELECT DISTINCT actor_type, actor_id FROM audit_events "
                      "WHERE action IN ('directory:create', 'directory_token:create') "
                      "AND actor_type = 'api_key'")
    assert [tuple(a) for a in actors] == [("api_key", keys["admin"].id)]


def test_duplicate_directory_name_is_a_409_and_bad_vendor_a_400(client, keys, tenant):
    """Conflicts and validation errors are problems naming the field."""
    base = f"/api/v1/orgs/{tenant.org.id}/directories"
    response = client.post(base, json={"vendor": "okta"}, headers=keys["admin"].headers)
    assert_problem(response, 409, "conflict")
    response = client.post(base, json={"vendor": "ldap"}, headers=keys["admin"].headers)
    assert assert_problem(response, 400, "validation")["errors"][0]["field"] == "vendor"


def test_disable_and_enable_a_directory(client, keys, tenant):
    """A disabled directory refuses SCIM; enabling it restores access."""
    url = f"/api/v1/orgs/{tenant.org.id}/directories/{tenant.directory.id}"
    scim = "/scim/v2/ServiceProviderConfig"
    disabled = client.post(f"{url}/disable", headers=keys["admin"].headers)
    assert disabled.get_json()["status"] == "disabled"
    assert client.get(scim, headers=tenant.headers).status_code == 401
    enabled = client.post(f"{url}/enable", headers=keys["admin"].headers)
    assert enabled.get_json()["status"] == "active"
    assert client.get(scim, headers=tenant.headers).status_code == 200


def test_disabling_a_directory_deprovisions_its_users(db, client, keys, tenant):
    """Disabling is a deprovisioning trigger: every live user goes, trigger directory_disabled."""
    user = client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ann@acme.com"})
    assert user.status_code == 201
    url = f"/api/v1/orgs/{tenant.org.id}/directories/{tenant.directory.id}"
    assert client.post(f"{url}/disable", headers=keys["admin"].headers).status_code == 200
    assert rows(db, "SELECT status, active FROM users")[0] == ("deprovisioned", False)
    triggers = rows(db, "SELECT trigger FROM deprovision_records")
    assert [t[0] for t in triggers] == ["directory_disabled"]
    types = {r[0] for r in rows(db, "SELECT type FROM outbox_events")}
    assert "user.deprovisioned" in types


def test_rotate_then_revoke_the_old_token(client, keys, tenant):
    """Rotation returns a new token once; revoking the old one stops it at once."""
    url = f"/api/v1/orgs/{tenant.org.id}/directories/{tenant.directory.id}/tokens"
    headers = keys["admin"].headers
    old = client.get(url, headers=headers).get_json()["items"]
    assert len(old) == 1
    assert "token" not in old[0]
    new = client.post(url, headers=headers)
    assert new.status_code == 201
    new_token = new.get_json()["token"]
    revoked = client.post(f"{url}/{old[0]['id']}/revoke", headers=headers)
    assert revoked.get_json()["state"] == "revoked"
    scim = "/scim/v2/ServiceProviderConfig"
    assert client.get(scim, headers=tenant.headers).status_code == 401
    assert client.get(scim, headers={"Authorization": f"Bearer {new_token}"}).status_code == 200
    states = sorted(t["state"] for t in client.get(url, headers=headers).get_json()["items"])
    assert states == ["revoked", "valid"]


def test_third_valid_token_is_a_conflict(client, keys, tenant):
    """At most tokens.max_valid_per_directory tokens are valid at once."""
    url = f"/api/v1/orgs/{tenant.org.id}/directories/{tenant.directory.id}/tokens"
    assert client.post(url, headers=keys["operator"].headers).status_code == 201
    assert_problem(client.post(url, headers=keys["operator"].headers), 409, "conflict")
    # The OpenAPI description says so too (the route has no body, which implied none).
    spec = client.get("/api/v1/openapi.json").get_json()
    operation = spec["paths"]["/api/v1/orgs/{org_id}/directories/{directory_id}/tokens"]
    assert "409" in operation["post"]["responses"]


def test_directory_of_another_org_is_404_even_under_own_org_path(client, keys, tenant,
                                                                 other_tenant):
    """Naming another org's directory id under your own org reveals nothing."""
    url = f"/api/v1/orgs/{tenant.org.id}/directories/{other_tenant.directory.id}"
    assert_problem(client.get(url, headers=keys["admin"].headers), 404, "not-found")
    assert_problem(client.post(f"{url}/disable", headers=keys["operator"].headers), 404,
                   "not-found")


def test_directory_list_filters_by_status(client, keys, tenant):
    """?status=disabled lists only disabled directories."""
    base = f"/api/v1/orgs/{tenant.org.id}/directories"
    client.post(base, json={"vendor": "generic"}, headers=keys["admin"].headers)
    client.post(f"{base}/{tenant.directory.id}/disable", headers=keys["admin"].headers)
    listed = client.get(f"{base}?status=disabled", headers=keys["admin"].headers).get_json()
    assert [d["id"] for d in listed["items"]] == [tenant.directory.id]


def test_database_lock_timeout_is_a_503_problem(app, db, client, keys, tenant):
    """A write stuck behind a database lock is a retryable 503 problem, never a 500."""
    base = f"/api/v1/orgs/{tenant.org.id}/directories"
    with database_locked(app, db):
        response = client.post(base, json={"vendor": "entra", "name": "Entra two"},
                               headers=keys["admin"].headers)
    body = assert_problem(response, 503, "unavailable")
    assert response.headers["Retry-After"] == "1"
    assert "retry" in body["detail"]
    assert rows(db, "SELECT count(*) FROM directories WHERE name = 'Entra two'")[0][0] == 0
