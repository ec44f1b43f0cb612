"""What a SCIM request refused with 429 by a rate limit costs: no statement the refusal can
do without, while the flight recorder still records it for the token's directory."""

from __future__ import annotations

import secrets
import threading

from app import create_app
from app.directory.oauth_clients import create_client
from app.models import Directory
from app.scim.recorder import flush
from tests.conftest import OPERATOR, app_overrides, rows
from tests.statements import captured

SPC = "/scim/v2/ServiceProviderConfig"
IP = {"REMOTE_ADDR": "203.0.113.9"}


def _app(database_url: str, **limits: object):
    overrides = app_overrides(database_url)
    overrides["ratelimit"] = {**overrides["ratelimit"], "storage": "database", **limits}
    return create_app(overrides)


def _request_thread_statements(app):
    """Statements the test's own thread runs (the recorder's writer thread is another)."""
    main = threading.current_thread()
    return captured(app.extensions["roster.db"].engine,
                    lambda _s: threading.current_thread() is main)


def _assert_scim_429(response) -> None:
    assert response.status_code == 429
    assert response.mimetype == "application/scim+json"
    body = response.get_json(force=True)
    assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert body["status"] == "429"
    assert int(response.headers["Retry-After"]) >= 1


def _recorded_429s(db, app) -> list[tuple[str, int]]:
    flush(app)
    return [tuple(row) for row in rows(
        db, "SELECT directory_id, status FROM scim_requests WHERE status = 429")]


def test_a_token_over_its_limit_is_refused_without_a_statement(database_url, db, tenant):
    """Once the window's quota is known to be spent, a refused request runs no statement:
    the recorder knows the token's directory from its earlier requests instead of looking
    the token up again, and still records every 429 under that directory."""
    app = _app(database_url, scim="2/minute")
    client = app.test_client()
    for _ in range(2):
        assert client.get(SPC, headers=tenant.headers).status_code == 200
    _assert_scim_429(client.get(SPC, headers=tenant.headers))  # leases: learns it is spent
    with _request_thread_statements(app) as seen:
        for _ in range(3):
            _assert_scim_429(client.get(SPC, headers=tenant.headers))
    assert seen == []
    assert _recorded_429s(db, app) == [(tenant.directory.id, 429)] * 4


def test_a_node_that_never_saw_the_token_looks_it_up_once(database_url, db, tenant):
    """A node whose first request of a token is refused (other nodes spent the quota)
    looks the token up once to record the 429 for its directory, and not again."""
    first, second = _app(database_url, scim="2/minute"), _app(database_url, scim="2/minute")
    for _ in range(2):
        assert first.test_client().get(SPC, headers=tenant.headers).status_code == 200
    client = second.test_client()
    _assert_scim_429(client.get(SPC, headers=tenant.headers))
    with _request_thread_statements(second) as seen:
        for _ in range(3):
            _assert_scim_429(client.get(SPC, headers=tenant.headers))
    assert seen == []
    assert _recorded_429s(db, second) == [(tenant.directory.id, 429)] * 4


def test_a_blocked_address_is_refused_without_looking_its_tokens_up(database_url, db,
                                                                    tenant):
    """Past the failed-authentication limit an address's made-up tokens are answered 429
    "without the credential being looked up" (README): the recorder looked each one up
    again to find its directory, one read per request of the flood."""
    app = _app(database_url, failed_auth="2/minute")
    client = app.test_client()
    for _ in range(2):
        response = client.get(SPC, environ_base=IP,
                              headers={"Authorization": f"Bearer {secrets.token_hex(16)}"})
        assert response.status_code == 401
    with _request_thread_statements(app) as seen:
        for _ in range(3):
            _assert_scim_429(client.get(
                SPC, environ_base=IP,
                headers={"Authorization": f"Bearer {secrets.token_hex(16)}"}))
    assert seen == []
    assert _recorded_429s(db, app) == []


def test_an_access_token_over_its_clients_limit_is_refused_without_a_statement(
        database_url, db, tenant):
    """An OAuth access token counts under its client: once the client's window is spent,
    its refusals run no statement either and are recorded for the directory."""
    app = _app(database_url, scim="2/minute")
    client = app.test_client()
    with db.transaction() as session:
        oauth_client, secret = create_client(
            session, session.get(Directory, tenant.directory.id), OPERATOR)
        client_id = oauth_client.client_id
    token = client.post("/oauth/token", data={
        "grant_type": "client_credentials", "client_id": client_id,
        "client_secret": secret}).get_json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(2):
        assert client.get(SPC, headers=headers).status_code == 200
    _assert_scim_429(client.get(SPC, headers=headers))
    with _request_thread_statements(app) as seen:
        for _ in range(3):
            _assert_scim_429(client.get(SPC, headers=headers))
    assert seen == []
    assert _recorded_429s(db, app) == [(tenant.directory.id, 429)] * 4
