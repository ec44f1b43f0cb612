"""Role catalog, custom roles and API key management over the API."""

from __future__ import annotations

import pytest

from tests.api.test_frame import assert_problem
from tests.conftest import rows

MONEY = {"amount": "500", "currency": "EUR"}


def test_role_catalog_is_listed_for_the_admin(client, keys, tenant):
    """The seeded catalog is visible to the organization's admin."""
    body = client.get(f"/api/v1/orgs/{tenant.org.id}/roles?limit=200",
                      headers=keys["admin"].headers).get_json()
    assert "buyer" in {r["key"] for r in body["items"]}
    assert body["next_cursor"] is None


def test_admin_creates_a_custom_role(db, client, keys, tenant):
    """A valid custom role is stored, marked custom and audited with the key."""
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/roles", headers=keys["admin"].headers,
                           json={"key": "night_buyer", "name": "Night buyer",
                                 "permissions": ["orders.place"],
                                 "parameters": {"limit": {"type": "money", "default": MONEY}}})
    assert response.status_code == 201, response.data
    assert response.get_json()["custom"] is True
    assert response.get_json()["parameters"]["limit"]["default"] == MONEY
    assert rows(db, "SELECT actor_id FROM audit_events WHERE action = 'role:create' AND "
                    "actor_type = 'api_key'")[0][0] == keys["admin"].id
    custom = client.get(f"/api/v1/orgs/{tenant.org.id}/roles?custom=true",
                        headers=keys["admin"].headers).get_json()["items"]
    assert [r["key"] for r in custom] == ["night_buyer"]


@pytest.mark.parametrize(("body", "field"), [
    ({"permissions": ["orders.steal"]}, "permissions"),
    ({"parameters": {"limit": {"type": "float", "default": 1}}}, "parameters.limit"),
    ({"parameters": {"limit": {"type": "int", "default": "ten"}}}, "parameters.limit.default"),
    ({"parameters": {"limit": {"type": "int", "default": 2**53}}}, "parameters.limit.default"),
    ({"parameters": {"limit": {"type": "int", "default": -(2**53)}}},
     "parameters.limit.default"),
    ({"parameters": {"limit": {"type": "money", "default": {"amount": "x", "currency": "EUR"}}}},
     "parameters.limit.default.amount"),
    ({"key": "Bad Key"}, "key"),
])
def test_invalid_custom_role_names_the_field(db, client, keys, tenant, body, field):
    """Unknown permissions and badly typed parameters are a 400 naming the field."""
    payload = {"key": "custom_x", "name": "X", **body}
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/roles", json=payload,
                           headers=keys["admin"].headers)
    problem = assert_problem(response, 400, "validation")
    assert field in {e["field"] for e in problem["errors"]}
    assert rows(db, "SELECT count(*) FROM roles WHERE key = 'custom_x'")[0][0] == 0


def test_duplicate_role_key_is_a_conflict(client, keys, tenant):
    """A second role with the same key answers 409."""
    response = client.post(f"/api/v1/orgs/{tenant.org.id}/roles", headers=keys["admin"].headers,
                           json={"key": "buyer", "name": "Buyer again"})
    assert_problem(response, 409, "conflict")


def test_operator_creates_lists_and_revokes_keys(db, client, keys, tenant):
    """An operator key issues an auditor key that works, lists it, and revokes it."""
    headers = keys["operator"].headers
    response = client.post("/api/v1/apikeys", headers=headers,
                           json={"role": "auditor", "organization": tenant.org.slug,
                                 "name": "soc2", "expires_at": "2099-01-01T00:00:00Z"})
    assert response.status_code == 201, response.data
    created = response.get_json()
    assert created["key"].startswith("rk_")
    assert created["organization_id"] == tenant.org.id
    auditor = {"Authorization": f"Bearer {created['key']}"}
    assert client.get("/api/v1/audit", headers=auditor).status_code == 200
    listed = client.get(f"/api/v1/apikeys?organization={tenant.org.slug}&role=auditor",
                        headers=headers).get_json()["items"]
    assert {k["id"] for k in listed} == {keys["auditor"].id, created["id"]}
    assert all("key" not in k for k in listed)
    revoked = client.post(f"/api/v1/apikeys/{created['id']}/revoke", headers=headers)
    assert revoked.get_json()["state"] == "revoked"
    assert_problem(client.get("/api/v1/audit", headers=auditor), 401, "unauthorized")
    stored = rows(db, "SELECT key_hash FROM api_keys WHERE id = :id", id=created["id"])[0][0]
    assert created["key"] not in stored
    assert len(stored) == 64


def test_answers_carrying_a_new_secret_are_never_cached(client, keys, tenant):
    """A new API key, a new directory's first SCIM token and a rotated token are shown once:
    their answers say ``Cache-Control: no-store`` (RFC 9111 §5.2.2.5, as RFC 6749 §5.1 asks
    of token responses), and so does every other keyed answer."""
    operator, admin = keys["operator"].headers, keys["admin"].headers
    base = f"/api/v1/orgs/{tenant.org.id}/directories"
    answers = {
        "api key": client.post("/api/v1/apikeys", headers=operator, json={"role": "operator"}),
        "directory": client.post(base, headers=admin, json={"vendor": "okta", "name": "b"}),
        "token": client.post(f"{base}/{tenant.directory.id}/tokens", headers=admin),
        "listing": client.get("/api/v1/apikeys", headers=operator),
    }
    assert answers["api key"].get_json()["key"].startswith("rk_")
    assert answers["directory"].get_json()["token"]["token"].startswith("rst_")
    assert answers["token"].get_json()["token"].startswith("rst_")
    assert {name: (a.status_code, a.headers.get("Cache-Control"))
            for name, a in answers.items()} == {
        "api key": (201, "no-store"), "directory": (201, "no-store"),
        "token": (201, "no-store"), "listing": (200, "no-store")}


@pytest.mark.parametrize(("body", "field"), [
    ({"role": "admin"}, "organization"),
    ({"role": "operator", "organization": "acme"}, "organization"),
    ({"role": "root"}, "role"),
    ({"role": "operator", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
])
def test_invalid_key_requests_name_the_field(client, keys, tenant, body, field):
    """Org binding rules and bad roles or expiries are 400s naming the field."""
    response = client.post("/api/v1/apikeys", json=body, headers=keys["operator"].headers)
    assert field in {e["field"] for e in assert_problem(response, 400, "validation")["errors"]}


def test_keyed_errors_are_never_cached_either(client, keys):
    """Errors to a keyed call say ``Cache-Control: no-store`` too, as the README promises of
    every keyed answer: a 404, 400, 403 or 405 is otherwise heuristically cacheable
    (RFC 9111 §4.2.2) and names private things (an organization's slug, a key's role)."""
    operator, portal = keys["operator"].headers, keys["portal"].headers
    answers = {
        "missing org": client.get("/api/v1/orgs/nosuch", headers=operator),
        "bad query": client.get("/api/v1/orgs?limit=0", headers=operator),
        "forbidden": client.get("/api/v1/orgs", headers=portal),
        "method": client.put("/api/v1/orgs", headers=operator),
        "no route": client.get("/api/v1/nothing-here", headers=operator),
        "refused key": client.get("/api/v1/orgs", headers={"Authorization": "Bearer rk_x"}),
    }
    assert {name: (a.status_code, a.headers.get("Cache-Control"))
            for name, a in answers.items()} == {
        "missing org": (404, "no-store"), "bad query": (400, "no-store"),
        "forbidden": (403, "no-store"), "method": (405, "no-store"),
        "no route": (404, "no-store"), "refused key": (401, "no-store")}


@pytest.mark.parametrize("sent", ["2099-06-01T12:30:00.123456+05:30",
                                  "9999-12-31T23:59:00-01:00", "2099-01-01T00:00:00Z"])
def test_a_created_key_echoes_its_expiry_as_stored(db, client, keys, tenant, sent):
    """The create response (and its audit record) give ``expires_at`` as it is stored, in
    UTC (past 9999-12-31 in UTC: the last instant a column holds), as every later read
    says it; the request's own form was echoed."""
    headers = keys["operator"].headers
    created = client.post("/api/v1/apikeys", headers=headers,
                          json={"role": "operator", "expires_at": sent}).get_json()
    listed = client.get("/api/v1/apikeys?role=operator", headers=headers).get_json()["items"]
    stored = next(k for k in listed if k["id"] == created["id"])
    assert created["expires_at"] == stored["expires_at"]
    assert created["expires_at"].endswith("+00:00")
    audited = rows(db, "SELECT data FROM audit_events WHERE action = 'api_key:create' "
                       "AND subject_id = :id", id=created["id"])[0][0]
    assert f'"expires_at": "{created["expires_at"]}"' in str(audited).replace("'", '"')
