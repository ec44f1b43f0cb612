"""A SCIM Bulk costs one request per operation against the token's rate limit (RFC 7644
§3.7): refused before any operation runs when the window cannot cover it (429), refused for
good when no window could (413), and maxOperations advertised accordingly."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from flask import Flask

from app import create_app
from app.directory.oauth_clients import create_client
from app.models import Directory
from app.scim.recorder import flush
from tests.conftest import OPERATOR, app_overrides, rows

BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
SPC = "/scim/v2/ServiceProviderConfig"
STORAGES = ["memory", "database"]


@contextmanager
def _node(database_url: str, storage: str, scim_limit: str, **scim: int) -> Iterator[Flask]:
    """An app instance ("node") with a low SCIM limit; its recorded requests are written
    before the test ends."""
    overrides = app_overrides(database_url)
    overrides["ratelimit"] = {**overrides["ratelimit"], "scim": scim_limit, "storage": storage}
    if scim:
        overrides["scim"] = scim
    built = create_app(overrides)
    try:
        yield built
    finally:
        flush(built)
        built.extensions["roster.db"].dispose()


def _bulk(client, tenant, count: int, prefix: str = "u"):
    ops = [{"method": "POST", "path": "/Users", "bulkId": f"{prefix}{i}",
            "data": {"schemas": [USER], "userName": f"{prefix}{i}@acme.com"}}
           for i in range(count)]
    return client.post("/scim/v2/Bulk", headers=tenant.headers,
                       json={"schemas": [BULK], "Operations": ops})


def _users(db) -> int:
    return rows(db, "SELECT count(*) FROM users")[0][0]


def _assert_scim_error(response, status: int) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/scim+json"
    body = response.get_json(force=True)
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    return body


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bulk_costs_one_request_per_operation(database_url, db, tenant, storage):
    """With 10/minute, a Bulk of 4 leaves 6 requests: the seventh is a 429."""
    with _node(database_url, storage, "10/minute") as app:
        client = app.test_client()
        response = _bulk(client, tenant, 4)
        assert response.status_code == 200
        assert [op["status"] for op in response.get_json(force=True)["Operations"]] == \
            ["201"] * 4
        statuses = [client.get(SPC, headers=tenant.headers).status_code for _ in range(7)]
        assert statuses == [200] * 6 + [429]


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bulk_the_window_cannot_cover_is_a_429_and_runs_nothing(database_url, db, tenant,
                                                                  storage):
    """5 of 10 used, a Bulk of 6 is refused whole (SCIM 429 with Retry-After, no user
    created); it costs its one request and the other 4 stay usable."""
    with _node(database_url, storage, "10/minute") as app:
        client = app.test_client()
        for _ in range(5):
            assert client.get(SPC, headers=tenant.headers).status_code == 200
        response = _bulk(client, tenant, 6)
        body = _assert_scim_error(response, 429)
        assert "Bulk of 6 operations" in body["detail"]
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert _users(db) == 0
        statuses = [client.get(SPC, headers=tenant.headers).status_code for _ in range(5)]
        assert statuses == [200] * 4 + [429]


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bulk_of_the_whole_limit_fits_an_unused_window(database_url, db, tenant, storage):
    """A Bulk of exactly the limit succeeds in a fresh window; the next request is a 429."""
    with _node(database_url, storage, "5/minute") as app:
        client = app.test_client()
        assert _bulk(client, tenant, 5).status_code == 200
        assert _users(db) == 5
        _assert_scim_error(client.get(SPC, headers=tenant.headers), 429)


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bulk_larger_than_the_limit_is_a_413_naming_both_numbers(database_url, db,
                                                                   tenant, storage):
    """No window could cover 6 operations under 5/minute: 413 (as over maxOperations,
    RFC 7644 §3.7.4), not a 429 to retry; nothing runs and the window is not spent."""
    with _node(database_url, storage, "5/minute") as app:
        client = app.test_client()
        body = _assert_scim_error(_bulk(client, tenant, 6), 413)
        assert "scimType" not in body
        assert "6 operations" in body["detail"]
        assert "5 per 1 minute" in body["detail"]
        assert _users(db) == 0
        statuses = [client.get(SPC, headers=tenant.headers).status_code for _ in range(5)]
        assert statuses == [200] * 4 + [429]


@pytest.mark.parametrize(("scim_limit", "configured", "advertised"),
                         [("5/minute", 1000, 5), ("6000/minute", 3, 3)])
def test_service_provider_config_advertises_the_operations_a_bulk_can_hold(
        database_url, db, tenant, scim_limit, configured, advertised):
    """maxOperations is the smaller of scim.bulk_max_operations and the rate limit."""
    with _node(database_url, "memory", scim_limit, bulk_max_operations=configured) as app:
        body = app.test_client().get(SPC, headers=tenant.headers).get_json(force=True)
        assert body["bulk"]["maxOperations"] == advertised


def test_two_nodes_share_the_cost_of_bulks(database_url, db, tenant):
    """On one database a Bulk on one node spends the quota the other sees: 30 of 40 on the
    first, a Bulk of 11 on the second is refused (it would pass 40), and exactly the 9
    requests left are served across both nodes."""
    with _node(database_url, "database", "40/minute") as first_app, \
            _node(database_url, "database", "40/minute") as second_app:
        first, second = first_app.test_client(), second_app.test_client()
        assert _bulk(first, tenant, 30).status_code == 200
        _assert_scim_error(_bulk(second, tenant, 11, prefix="v"), 429)
        assert _users(db) == 30
        statuses = [node.get(SPC, headers=tenant.headers).status_code
                    for _ in range(10) for node in (first, second)]
        assert statuses.count(200) == 9
        assert set(statuses[-4:]) == {429}


def _oauth_tokens(db, tenant, client, count: int) -> list[dict[str, str]]:
    """``count`` access tokens issued to one OAuth client of the tenant's directory."""
    with db.transaction() as session:
        oauth_client, secret = create_client(
            session, session.get(Directory, tenant.directory.id), OPERATOR)
        client_id = oauth_client.client_id
    tokens = []
    for _ in range(count):
        response = client.post("/oauth/token", data={
            "grant_type": "client_credentials", "client_id": client_id,
            "client_secret": secret})
        assert response.status_code == 200
        tokens.append({"Authorization": f"Bearer {response.get_json()['access_token']}"})
    return tokens


@pytest.mark.parametrize("storage", STORAGES)
def test_access_tokens_of_one_oauth_client_share_its_limit(database_url, db, tenant,
                                                          storage):
    """An OAuth client may obtain any number of access tokens (RFC 6749 §4.4): they count
    together against one limit, or each new token would bring a fresh quota."""
    with _node(database_url, storage, "3/minute") as app:
        client = app.test_client()
        first, second = _oauth_tokens(db, tenant, client, 2)
        statuses = [client.get(SPC, headers=headers).status_code
                    for headers in (first, second, first, second, first)]
        assert statuses == [200, 200, 200, 429, 429]
        # Another credential of the same directory (its static token) is counted apart.
        assert client.get(SPC, headers=tenant.headers).status_code == 200


@pytest.mark.parametrize("storage", STORAGES)
def test_a_bulk_with_an_access_token_is_charged_to_its_oauth_client(database_url, db,
                                                                   tenant, storage):
    """A Bulk of 4 under 5/minute leaves the client one request, whichever token sends it."""
    with _node(database_url, storage, "5/minute") as app:
        client = app.test_client()
        first, second = _oauth_tokens(db, tenant, client, 2)
        response = client.post("/scim/v2/Bulk", headers=first, json={
            "schemas": [BULK], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": f"b{i}",
                 "data": {"schemas": [USER], "userName": f"b{i}@acme.com"}}
                for i in range(4)]})
        assert response.status_code == 200
        assert [client.get(SPC, headers=second).status_code for _ in range(2)] == [200, 429]


def test_a_made_up_access_token_is_a_401_and_counts_against_no_client(database_url, db,
                                                                     tenant):
    """A token with the access-token prefix that was never issued is refused as any other."""
    with _node(database_url, "database", "3/minute") as app:
        client = app.test_client()
        response = client.get(SPC, headers={"Authorization": "Bearer rsa_made-up"})
        body = _assert_scim_error(response, 401)
        assert "not valid" in body["detail"]
        assert rows(db, "SELECT count(*) FROM rate_limit_counters "
                        "WHERE key LIKE '%/scim/%'")[0][0] == 0


def test_a_bearer_spelling_a_client_key_spends_nothing_of_that_clients_quota(database_url,
                                                                           db, tenant):
    """The OAuth client's quota was kept under the digest of "oauth-client\\x00<id>": an
    unauthenticated caller sending that string as its bearer token (client ids are no
    secret) was counted under the same key and spent the IdP's quota from anywhere."""
    with _node(database_url, "database", "3/minute") as app:
        client = app.test_client()
        (victim,) = _oauth_tokens(db, tenant, client, 1)
        client_id = rows(db, "SELECT client_id FROM scim_oauth_clients")[0][0]
        forged = {"Authorization": f"Bearer oauth-client\x00{client_id}"}
        for _ in range(3):
            _assert_scim_error(client.get(SPC, headers=forged,
                                          environ_base={"REMOTE_ADDR": "198.51.100.1"}), 401)
        assert client.get(SPC, headers=victim).status_code == 200


@pytest.mark.parametrize("storage", STORAGES)
def test_an_oauth_clients_token_requests_are_limited(database_url, db, tenant, storage):
    """/oauth/token was limited by nothing: an authenticated client could have any number
    of tokens issued, a row written each. A client's token requests now have a limit of
    their own (``ratelimit.scim``'s): past it the answer is 429 temporarily_unavailable with
    Retry-After and no token is issued, while a wrong secret is still a 401 and the issued
    tokens keep their SCIM quota."""
    with _node(database_url, storage, "3/minute") as app:
        client = app.test_client()
        with db.transaction() as session:
            oauth_client, secret = create_client(
                session, session.get(Directory, tenant.directory.id), OPERATOR)
            client_id = oauth_client.client_id
        form = {"grant_type": "client_credentials", "client_id": client_id,
                "client_secret": secret}
        issued = [client.post("/oauth/token", data=form) for _ in range(3)]
        assert [response.status_code for response in issued] == [200, 200, 200]
        refused = client.post("/oauth/token", data=form)
        assert refused.status_code == 429
        assert refused.get_json()["error"] == "temporarily_unavailable"
        assert int(refused.headers["Retry-After"]) >= 1
        assert refused.headers["Cache-Control"] == "no-store"
        assert rows(db, "SELECT count(*) FROM issued_tokens")[0][0] == 3
        wrong = client.post("/oauth/token", data={**form, "client_secret": "nope"})
        assert wrong.status_code == 401
        headers = {"Authorization": f"Bearer {issued[0].get_json()['access_token']}"}
        assert [client.get(SPC, headers=headers).status_code for _ in range(4)] == \
            [200, 200, 200, 429]
