"""Failed authentications per client address: made-up credentials are limited, in each
protocol's error format, while good credentials from the same address still pass."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest
import sqlalchemy as sa

from app import create_app
from app.directory.apikeys import revoke_key
from app.models.api import ApiKey
from app.settings import SettingsError
from tests.api.test_frame import assert_problem
from tests.conftest import OPERATOR, app_overrides, rows
from tests.statements import captured

SPC = "/scim/v2/ServiceProviderConfig"
IP = {"REMOTE_ADDR": "203.0.113.7"}


def _client(database_url: str, *, storage: str = "memory", failed_auth: str = "3/minute",
            **app: object):
    """An app instance with a low failed-authentication limit."""
    overrides = app_overrides(database_url)
    overrides["ratelimit"] = {**overrides["ratelimit"], "failed_auth": failed_auth,
                              "storage": storage}
    overrides["app"] = {**overrides["app"], **app}
    return create_app(overrides).test_client()


def _random_bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {secrets.token_urlsafe(24)}"}


def test_random_scim_tokens_from_one_address_get_a_scim_429(database_url, db, tenant):
    """Three refused tokens, then the address gets SCIM 429s; a known token still works."""
    client = _client(database_url)
    assert client.get(SPC, headers=tenant.headers, environ_base=IP).status_code == 200
    for _ in range(3):
        assert client.get(SPC, headers=_random_bearer(), environ_base=IP).status_code == 401
    response = client.get(SPC, headers=_random_bearer(), environ_base=IP)
    assert response.status_code == 429
    assert response.mimetype == "application/scim+json"
    body = response.get_json(force=True)
    assert body["status"] == "429"
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert "failed authentications" in body["detail"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    # The IdP whose token authenticated here is not hurt by its neighbour's failures.
    assert client.get(SPC, headers=tenant.headers, environ_base=IP).status_code == 200
    # Another address is not limited.
    other = {"REMOTE_ADDR": "198.51.100.9"}
    assert client.get(SPC, headers=_random_bearer(), environ_base=other).status_code == 401


def test_random_api_keys_get_a_429_problem(database_url, db, keys, tenant):
    """The API answers its problem JSON, with Retry-After."""
    client = _client(database_url)
    url = f"/api/v1/orgs/{tenant.org.id}"
    assert client.get(url, headers=keys["admin"].headers, environ_base=IP).status_code == 200
    for _ in range(3):
        bad = {"Authorization": f"Bearer rk_{secrets.token_urlsafe(24)}"}
        assert client.get(url, headers=bad, environ_base=IP).status_code == 401
    response = client.get(url, headers=_random_bearer(), environ_base=IP)
    body = assert_problem(response, 429, "rate-limited")
    assert "failed authentications" in body["detail"]
    assert int(response.headers["Retry-After"]) >= 1
    assert client.get(url, headers=keys["admin"].headers, environ_base=IP).status_code == 200
    # The public OpenAPI document checks no key: a stale one sent along does not matter.
    assert client.get("/api/v1/openapi.json", headers=_random_bearer(),
                      environ_base=IP).status_code == 200


def test_a_blocked_address_is_refused_without_a_lookup(database_url, db, tenant):
    """Past the limit a made-up token costs no database statement at all."""
    client = _client(database_url)
    for _ in range(3):
        client.get(SPC, headers=_random_bearer(), environ_base=IP)
    with captured(db.engine, lambda _s: True) as seen:
        response = client.get(SPC, headers=_random_bearer(), environ_base=IP)
    assert response.status_code == 429
    assert seen == []


def test_oauth_token_endpoint_limits_bad_client_secrets(database_url, db, tenant):
    """/oauth/token answers OAuth error JSON with 429 once an address failed too often."""
    client = _client(database_url)
    data = {"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"}
    for _ in range(3):
        data["client_secret"] = secrets.token_urlsafe(8)
        assert client.post("/oauth/token", data=data, environ_base=IP).status_code == 401
    basic = base64.b64encode(b"nobody:guess").decode()
    response = client.post("/oauth/token", data={"grant_type": "client_credentials"},
                           headers={"Authorization": f"Basic {basic}"}, environ_base=IP)
    assert response.status_code == 429
    body = response.get_json()
    assert body["error"] == "temporarily_unavailable"
    assert "failed authentications" in body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    assert int(response.headers["Retry-After"]) >= 1


def test_x_forwarded_for_is_ignored_without_trusted_proxies(database_url, db, tenant):
    """A client cannot escape the limit by making up X-Forwarded-For."""
    client = _client(database_url)
    for n in range(4):
        forged = {**_random_bearer(), "X-Forwarded-For": f"192.0.2.{n}"}
        last = client.get(SPC, headers=forged, environ_base=IP)
    assert last.status_code == 429


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(database_url, db, tenant):
    """With app.trusted_proxies = 1 clients behind the proxy are told apart."""
    client = _client(database_url, trusted_proxies=1)
    for _ in range(3):
        headers = {**_random_bearer(), "X-Forwarded-For": "192.0.2.1"}
        assert client.get(SPC, headers=headers, environ_base=IP).status_code == 401
    blocked = {**_random_bearer(), "X-Forwarded-For": "192.0.2.1"}
    assert client.get(SPC, headers=blocked, environ_base=IP).status_code == 429
    other = {**_random_bearer(), "X-Forwarded-For": "192.0.2.2"}
    assert client.get(SPC, headers=other, environ_base=IP).status_code == 401


def test_ipv6_addresses_of_one_64_count_together(database_url, db, tenant):
    """A host holding a /64 cannot get fresh attempts from each of its addresses."""
    client = _client(database_url)
    for n in range(3):
        where = {"REMOTE_ADDR": f"2001:db8:1:2::{n + 1:x}"}
        assert client.get(SPC, headers=_random_bearer(), environ_base=where).status_code == 401
    where = {"REMOTE_ADDR": "2001:db8:1:2:ffff::9"}
    assert client.get(SPC, headers=_random_bearer(), environ_base=where).status_code == 429
    where = {"REMOTE_ADDR": "2001:db8:1:3::1"}
    assert client.get(SPC, headers=_random_bearer(), environ_base=where).status_code == 401


def test_two_nodes_on_one_database_share_the_failure_count(database_url, db, tenant):
    """Failures on one node count on the other; the counter holds no client secret."""
    first = _client(database_url, storage="database")
    second = _client(database_url, storage="database")
    statuses = [node.get(SPC, headers=_random_bearer(), environ_base=IP).status_code
                for node in (first, second, first, second, first)]
    assert statuses == [401, 401, 401, 401, 429]
    stored = rows(db, "SELECT key, count FROM rate_limit_counters WHERE key LIKE "
                      "'%failed_auth%'")
    assert [row.count for row in stored] == [4]


def test_a_successful_request_adds_no_statement(database_url, db, tenant):
    """The good path stays as it was: no counter read or write for a token that works."""
    client = _client(database_url, storage="database")
    assert client.get(SPC, headers=tenant.headers, environ_base=IP).status_code == 200
    with captured(db.engine, lambda s: "rate_limit_counters" in s) as seen:
        for _ in range(5):
            assert client.get(SPC, headers=tenant.headers, environ_base=IP).status_code == 200
    assert seen == []


def test_a_revoked_token_is_forgotten_as_known(database_url, db, keys, tenant):
    """A once-good credential that fails is no longer let through a block."""
    client = _client(database_url, failed_auth="1/minute")
    url = f"/api/v1/orgs/{tenant.org.id}"
    headers = keys["admin"].headers
    assert client.get(url, headers=headers, environ_base=IP).status_code == 200
    with db.transaction() as session:
        key = session.scalar(sa.select(ApiKey).where(ApiKey.key_hash == hashlib.sha256(
            headers["Authorization"].removeprefix("Bearer ").encode()).hexdigest()))
        revoke_key(session, key, OPERATOR)
    assert client.get(url, headers=headers, environ_base=IP).status_code == 401
    assert client.get(url, headers=headers, environ_base=IP).status_code == 429


@pytest.mark.parametrize("value", ["abc", "0/minute"])
def test_a_bad_failed_auth_setting_stops_the_app(database_url, value):
    """The limit is checked at start like every other limit."""
    with pytest.raises(SettingsError, match=r"ratelimit\.failed_auth"):
        _client(database_url, failed_auth=value)


@pytest.mark.parametrize(("method", "path"), [("GET", "/scim/v2/Nope"), ("GET", "/scim/v2/"),
                                              ("DELETE", SPC), ("PUT", "/scim/v2/Bulk")])
def test_made_up_tokens_on_paths_no_view_serves_count_as_failures(database_url, db, method,
                                                                  path):
    """An unknown SCIM path, or a method the endpoint does not serve, answered a made-up
    token 404/405 without checking it: never a failure, so never blocked, while each new
    token wrote a rate-limit counter row. The token is checked first (401), as everywhere
    under /scim/v2, and the address is blocked as on any other path."""
    client = _client(database_url, storage="database")
    statuses = [client.open(path, method=method, headers=_random_bearer(),
                            environ_base=IP).status_code for _ in range(6)]
    assert statuses == [401, 401, 401, 429, 429, 429]
    assert rows(db, "SELECT count(*) FROM rate_limit_counters "
                    "WHERE key LIKE '%/scim/%'")[0][0] == 3
    # Without a token the answer is the path's own, as before.
    assert client.open(path, method=method).status_code in (404, 405)
