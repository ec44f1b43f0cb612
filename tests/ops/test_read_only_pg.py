"""A PostgreSQL server that takes no writes: a hot standby (a node pointed at the replica
after a failover) or ``default_transaction_read_only``, emulated per connection."""

from __future__ import annotations

import pytest

from app import create_app
from tests.conftest import app_overrides

USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def read_only_app(database_url, dialect):
    """An app whose every PostgreSQL session is read-only, on the migrated test database."""
    if dialect != "postgresql":
        pytest.skip("PostgreSQL's read-only transactions (SQLite's: tests/ops/test_read_only.py)")
    joiner = "&" if "?" in database_url else "?"
    app = create_app(app_overrides(
        f"{database_url}{joiner}options=-c%20default_transaction_read_only%3Don"))
    yield app
    app.extensions["roster.db"].dispose()


def test_readyz_is_503_when_postgresql_refuses_writes(read_only_app):
    """The schema answers and is at head, so /readyz said ready, while every write failed:
    it now asks the server whether this session may write, and says why not."""
    response = read_only_app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "reason": "database read-only"}


def test_requests_meeting_a_read_only_server_are_a_retryable_503(read_only_app, tenant):
    """A write refused for a read-only transaction (SQLSTATE 25006) was a 500 with a
    traceback per request; it is an outage to retry, as SQLite's read-only database is."""
    client = read_only_app.test_client()
    response = client.post("/scim/v2/Users", headers=tenant.headers,
                           json={"schemas": [USER], "userName": "standby@example.com"})
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert response.get_json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
