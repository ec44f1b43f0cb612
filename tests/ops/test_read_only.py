"""A SQLite database this process can open but not write: a read-only file, directory or
mount (ext4 remounts read-only on disk errors), emulated by SQLite's own ``mode=ro``."""

from __future__ import annotations

import logging
import os
import sqlite3

import pytest

from app import create_app
from app.db import Database
from app.migrate import upgrade
from tests.conftest import app_overrides, make_tenant

pytestmark = pytest.mark.skipif(bool(os.environ.get("ROSTER_TEST_PG_URL")),
                                reason="SQLite's read-only open mode")
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
def read_only(tmp_path):
    """A migrated database with a tenant, and an app that opens it read-only."""
    path = tmp_path / "roster.db"
    upgrade(f"sqlite:///{path}")
    writable = Database(f"sqlite:///{path}")
    tenant = make_tenant(writable, "acme")
    writable.dispose()
    app = create_app(app_overrides(f"sqlite:///file:{path}?mode=ro&uri=true"))
    yield app, tenant, path
    app.extensions["roster.db"].dispose()


def test_readyz_is_503_when_the_database_refuses_writes(read_only):
    """Reads still work, so 'reachable and migrated' is not enough: /readyz tries a write
    (rolled back) and takes the node out of the balancer."""
    app, _tenant, _path = read_only
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {"status": "unavailable", "reason": "database read-only"}


def test_readyz_is_200_while_another_writer_holds_the_lock(fresh_url):
    """A database busy with another process's write is writable: ready, and answered at once
    (the probe does not wait in the busy handler)."""
    upgrade(fresh_url)
    app = create_app(app_overrides(fresh_url))
    assert app.test_client().get("/readyz").status_code == 200  # connected, in WAL mode
    other = sqlite3.connect(fresh_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        response = app.test_client().get("/readyz")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert response.status_code == 200
    assert response.get_json()["status"] == "ok"
    app.extensions["roster.db"].dispose()


def test_a_scim_request_is_a_retryable_503_without_a_traceback(read_only, caplog):
    """The IdP gets SCIM's own 503 with Retry-After (it retries), not a 500, and the log has
    one line per request naming the cause, no traceback. A read is refused too: it stamps
    the token's last use."""
    app, tenant, _path = read_only
    logging.getLogger().addHandler(caplog.handler)  # create_app set up the root's handlers
    try:
        client = app.test_client()
        created = client.post("/scim/v2/Users", headers=tenant.headers,
                              json={"schemas": [USER], "userName": "ro@acme.test"})
        listed = client.get("/scim/v2/Users", headers=tenant.headers)
    finally:
        logging.getLogger().removeHandler(caplog.handler)
    assert created.status_code == 503
    assert created.mimetype == "application/scim+json"
    assert created.get_json()["status"] == "503"
    assert created.headers["Retry-After"] == "1"
    assert (listed.status_code, listed.headers["Retry-After"]) == (503, "1")
    assert not [r for r in caplog.records if r.exc_info]
    assert any("attempt to write a readonly database" in r.getMessage()
               for r in caplog.records)
