"""A group create and a group rename claiming one displayName at once (PostgreSQL).

Both write the name into ``uq_groups_directory_display_name``; the second one to do so
waits there for the first transaction. A rename locks its members first and writes the
name after; a create wrote the name first (its INSERT) and locked its members after. So a
rename holding member V and waiting on the create's uncommitted name, and the create
waiting for V, deadlocked: PostgreSQL aborted one of them, a 503 where a 409 uniqueness
was due.

The requests go over real HTTP on real threads. A side transaction holds user W, so the
rename (locking its members V < W in one sorted statement) stops holding V; the create is
sent then, and W released once it waits.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.db import Database
from tests.conftest import Tenant, rows
from tests.lockwait import held, lock_waiters, started
from tests.scim.support import CORE_GROUP, PATCH_OP, http_call, live_server

pytestmark = pytest.mark.usefixtures("postgres_only")

LOCK_USER = "SELECT id FROM users WHERE id = :u FOR NO KEY UPDATE"


@pytest.fixture
def postgres_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("row locks and concurrent writers are PostgreSQL's (SQLite has one writer)")


def _users(url: str, tenant: Tenant) -> tuple[str, str]:
    """Two users, V and W, with V's id sorting before W's."""
    ids = []
    for name in ("v", "w"):
        status, body = http_call(url, tenant.token, "POST", "/Users", {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": f"{name}@acme.example"})
        assert status == 201, body
        ids.append(body["id"])
    first, second = sorted(ids)
    return first, second


def _rename(group: str, how: str, members: list[str]) -> tuple[str, str, dict[str, Any]]:
    if how == "patch":
        return ("PATCH", f"/Groups/{group}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "displayName", "value": "Buyers"}]})
    return ("PUT", f"/Groups/{group}", {"schemas": [CORE_GROUP], "displayName": "Buyers",
                                        "members": [{"value": m} for m in members]})


@pytest.mark.parametrize("how", ["patch", "put"])
def test_a_create_and_a_rename_to_one_name_at_once_give_one_409_not_a_deadlock(
        app, db: Database, tenant: Tenant, how: str) -> None:
    """The rename holds V and waits for W; a POST /Groups "Buyers" with member V is sent;
    W is released. One request wins the name, the other is a 409 uniqueness (before: a
    deadlock, answered 503), and exactly one group is named Buyers."""
    with live_server(app) as url:
        v, w = _users(url, tenant)
        status, body = http_call(url, tenant.token, "POST", "/Groups", {
            "schemas": [CORE_GROUP], "displayName": "Staff",
            "members": [{"value": v}, {"value": w}]})
        assert status == 201, body
        staff = body["id"]
        with held(db, LOCK_USER, u=w):
            rename, renamed = started(
                db, lambda: http_call(url, tenant.token, *_rename(staff, how, [v, w])))
            assert lock_waiters(db) == 1, f"the rename did not wait for W: {renamed}"
            create, created = started(db, lambda: http_call(
                url, tenant.token, "POST", "/Groups",
                {"schemas": [CORE_GROUP], "displayName": "Buyers",
                 "members": [{"value": v}]}), waiters=2)
            assert lock_waiters(db) == 2, f"the create did not wait: {created}"
        rename.join(30)
        create.join(30)
    statuses = sorted([renamed["result"][0], created["result"][0]])
    assert statuses in ([200, 409], [201, 409], [204, 409]), (renamed, created)
    loser = renamed if renamed["result"][0] == 409 else created
    assert loser["result"][1]["scimType"] == "uniqueness", loser
    assert rows(db, "SELECT count(*) FROM groups WHERE display_name = 'Buyers'")[0][0] == 1
