"""Disabling a directory while its IdP writes (bug hunt, HIGH): no user outlives the disable.

The disable deprovisions the users it lists; SCIM writes checked the directory's status only
at authentication, by a plain read. A user created or reactivated by a write that committed
after that list stayed active, with grants, in a directory whose tokens now answer 401. The
disable runs here in a real transaction held open, the SCIM requests over real HTTP.
"""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from app.db import Database
from tests.conftest import rows
from tests.lifecycle.support import disable, disable_in_flight
from tests.lockwait import held, started
from tests.scim.support import CORE_USER, PATCH_OP, http_call, live_server

BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"


def _user(name: str) -> dict[str, Any]:
    return {"schemas": [CORE_USER], "userName": name, "active": True}


def _live_users(db: Database) -> list[sa.Row]:
    return rows(db, "SELECT user_name FROM users WHERE active OR status NOT IN "
                    "('deprovisioned', 'deleted')")


def test_a_create_during_a_disable_is_refused_after_it(app, db, tenant):
    """A SCIM create sent while a disable is in flight waits for it and is answered 401 (as
    authentication would); no user is left active in the disabled directory."""
    with live_server(app) as url:
        assert http_call(url, tenant.token, "POST", "/Users", _user("old@acme.example"))[0] \
            == 201
        with disable_in_flight(db, tenant):
            thread, result = started(db, lambda: http_call(
                url, tenant.token, "POST", "/Users", _user("new@acme.example"), timeout=30))
        thread.join(30)
    status, body = result["result"]
    assert status == 401, body
    assert _live_users(db) == []
    assert rows(db, "SELECT user_name FROM users") == [("old@acme.example",)]


def test_a_bulk_authenticated_before_a_disable_commits_is_refused(app, db, tenant):
    """A Bulk request authenticated before the disable committed: its operation, written
    after, is refused 401 instead of creating an active user (SQLite too: the caller was
    authenticated in an earlier transaction)."""
    with live_server(app) as url, disable_in_flight(db, tenant):
        thread, result = started(db, lambda: http_call(url, tenant.token, "POST", "/Bulk", {
            "schemas": [BULK], "Operations": [
                {"method": "POST", "path": "/Users", "bulkId": "a",
                 "data": _user("bulk@acme.example")}]}, timeout=30))
    thread.join(30)
    status, body = result["result"]
    assert status in (200, 401), body
    if status == 200:  # authenticated before the disable committed: the operation is refused
        assert [op["status"] for op in body["Operations"]] == ["401"], body
    assert _live_users(db) == []


def test_a_disable_waits_for_a_reactivation_in_flight(app, db, tenant):
    """A SCIM reactivation in flight (waiting for its user's row) when the disable starts:
    the disable waits for it, then deprovisions the reactivated user too (PostgreSQL; on
    SQLite the two are one after the other anyway)."""
    if db.dialect != "postgresql":
        pytest.skip("row locks: SQLite has one writer at a time")
    with live_server(app) as url:
        status, user = http_call(url, tenant.token, "POST", "/Users", _user("ann@acme.example"))
        assert status == 201
        off = {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "active", "value": False}]}
        assert http_call(url, tenant.token, "PATCH", f"/Users/{user['id']}", off)[0] == 200
        on = {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "active", "value": True}]}
        with held(db, "SELECT id FROM users WHERE id = :u FOR NO KEY UPDATE", u=user["id"]):
            patch, patched = started(db, lambda: http_call(
                url, tenant.token, "PATCH", f"/Users/{user['id']}", on, timeout=30))

            def disabled() -> None:
                with db.transaction() as session:
                    disable(session, tenant)

            # The PATCH and the disable wait.
            disabling, outcome = started(db, disabled, waiters=2)
            waited = disabling.is_alive()
        patch.join(30)
        disabling.join(30)
    assert not isinstance(outcome.get("result"), BaseException), outcome
    assert patched["result"][0] == 200, patched
    assert _live_users(db) == []
    assert waited, "the disable did not wait for the SCIM write holding its directory"
    assert rows(db, "SELECT trigger FROM deprovision_records WHERE user_id = :u ORDER BY "
                    "applied_at", u=user["id"])[-1] == ("directory_disabled",)
    types = [r.type for r in rows(db, "SELECT type FROM outbox_events WHERE aggregate_id = :u "
                                      "ORDER BY id", u=user["id"])]
    assert types[-1] == "user.deprovisioned", types
    assert "user.reactivated" in types, types
