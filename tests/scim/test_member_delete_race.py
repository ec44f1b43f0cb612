"""A group write racing its member's SCIM DELETE or restore (PostgreSQL).

The requests go over real HTTP on real threads. The organization's audit chain head, which
every write takes at COMMIT (app/audit/log.py), is held by a side transaction, so that the
first request stops just before its commit with all its row locks held; the second is sent
then, and the head released once it waits. Without a mapping rule a group write locked no
user: a PATCH adding U checked U live, the DELETE committed, and the PATCH then added the
membership and announced ``membership.added`` for a deleted user (after the DELETE had
announced ``membership.removed``); a restore announced ``membership.added`` for a
membership a PATCH was removing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa

from app.db import Database
from app.lifecycle import reactivate_user
from app.models import User
from tests.conftest import OPERATOR, Tenant, rows
from tests.lockwait import lock_waiters, started
from tests.scim.support import (
    CORE_GROUP,
    CORE_USER,
    PATCH_OP,
    at_once,
    http_call,
    live_server,
)

pytestmark = pytest.mark.usefixtures("postgres_only")


@pytest.fixture
def postgres_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("row locks and concurrent writers are PostgreSQL's (SQLite has one writer)")


def _waiting(db: Database, call: Callable[[], Any],
             count: int) -> tuple[threading.Thread, dict[str, Any]]:
    """``call`` started (tests.lockwait), once ``count`` requests wait for a lock."""
    thread, outcome = started(db, call, waiters=count)
    assert lock_waiters(db) >= count, f"{count} request(s) never waited for a lock: {outcome}"
    return thread, outcome


@contextmanager
def _commits_held(db: Database, tenant: Tenant) -> Iterator[None]:
    """The organization's audit chain head locked until the block ends: every write of the
    organization stops at its COMMIT, holding its row locks."""
    engine = sa.create_engine(db.url)
    with engine.connect() as conn, conn.begin():
        found = conn.execute(sa.text("SELECT seq FROM audit_chain_heads WHERE chain = :c "
                                     "FOR UPDATE"), {"c": tenant.org.id}).all()
        assert found, "the tenant's chain head exists (its creation was audited)"
        yield
    engine.dispose()


def _user(url: str, tenant: Tenant, name: str) -> str:
    status, body = http_call(url, tenant.token, "POST", "/Users", {
        "schemas": [CORE_USER], "userName": f"{name}@acme.example",
        "externalId": f"ext-{name}"})
    assert status == 201, body
    return body["id"]


def _group(url: str, tenant: Tenant, name: str, members: list[str]) -> str:
    status, body = http_call(url, tenant.token, "POST", "/Groups", {
        "schemas": [CORE_GROUP], "displayName": name,
        "members": [{"value": m} for m in members]})
    assert status == 201, body
    return body["id"]


def _membership_events(db: Database, user_id: str) -> list[tuple[str, str]]:
    """(type, group) of every membership event naming the user, in outbox order."""
    found = rows(db, "SELECT type, aggregate_id, payload FROM outbox_events WHERE type IN "
                     "('membership.added', 'membership.removed') ORDER BY id")
    out = []
    for kind, group, payload in found:
        data = payload if isinstance(payload, dict) else json.loads(payload)
        if user_id in data["user_ids"]:
            out.append((kind, group))
    return out


def _member_rows(db: Database, group: str, user: str) -> int:
    return rows(db, "SELECT count(*) FROM memberships WHERE group_id = :g AND user_id = :u",
                g=group, u=user)[0][0]


def _add(group: str, user: str) -> dict[str, tuple[str, str, Any]]:
    return {
        "patch": ("PATCH", f"/Groups/{group}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": user}]}]}),
        "put": ("PUT", f"/Groups/{group}", {"schemas": [CORE_GROUP], "displayName": "Buyers",
                                            "members": [{"value": user}]}),
    }


@pytest.mark.parametrize("how", ["patch", "put", "post"])
def test_a_member_added_while_its_user_is_deleted_is_refused_after_the_delete(
        app, db, tenant, how):
    """The DELETE holds U and waits to commit; a PATCH / PUT adding U to G, or a POST of a
    group with U, then waits for U's row and, once the DELETE committed, finds U deleted:
    400 invalidValue, as when the DELETE came first. No membership, no membership.added."""
    with live_server(app) as url:
        user = _user(url, tenant, "ada")
        group = _group(url, tenant, "Buyers", [])
        with _commits_held(db, tenant):
            delete, deleted = _waiting(db, lambda: http_call(
                url, tenant.token, "DELETE", f"/Users/{user}", timeout=30), 1)
            method, path, body = (("POST", "/Groups", {
                "schemas": [CORE_GROUP], "displayName": "Sellers",
                "members": [{"value": user}]}) if how == "post" else _add(group, user)[how])
            write, written = _waiting(db, lambda: http_call(
                url, tenant.token, method, path, body, timeout=30), 2)
        delete.join(30)
        write.join(30)
    assert deleted["result"][0] == 204, deleted
    status, answer = written["result"]
    assert status == 400, answer
    assert answer["scimType"] == "invalidValue"
    assert rows(db, "SELECT count(*) FROM memberships WHERE user_id = :u", u=user)[0][0] == 0
    assert _membership_events(db, user) == []


def _operator_restore(db: Database, user: str) -> tuple[int, dict[str, str]]:
    """An operator's reactivation as ``roster lifecycle reactivate`` runs it."""
    with db.transaction() as session:
        found = session.get(User, user)
        assert found is not None
        reactivate_user(session, found, OPERATOR)
    return 201, {"id": user}


@pytest.mark.parametrize("how", ["scim", "operator"])
def test_a_restore_racing_a_members_removal_announces_what_stays(app, db, tenant, how):
    """U (deleted) is still a member of G, hidden. A PATCH removing U from G holds U and
    waits to commit; U's restore (Entra's re-create, or an operator's reactivation) waits
    for U's row and then finds no membership: it announces none, and the portal's last
    word on (G, U) is the removal."""
    with live_server(app) as url:
        user = _user(url, tenant, "ada")
        group = _group(url, tenant, "Buyers", [user])
        assert http_call(url, tenant.token, "DELETE", f"/Users/{user}")[0] == 204
        with _commits_held(db, tenant):
            remove, removed = _waiting(db, lambda: http_call(
                url, tenant.token, "PATCH", f"/Groups/{group}", {
                    "schemas": [PATCH_OP], "Operations": [
                        {"op": "remove", "path": f'members[value eq "{user}"]'}]},
                timeout=30), 1)
            restore, restored = _waiting(db, lambda: _operator_restore(db, user)
                                         if how == "operator" else http_call(
                url, tenant.token, "POST", "/Users", {
                    "schemas": [CORE_USER], "userName": "ada@acme.example",
                    "externalId": "ext-ada"}, timeout=30), 2)
        remove.join(30)
        restore.join(30)
        assert removed["result"][0] == 204, removed
        assert restored["result"][0] == 201, restored
        assert restored["result"][1]["id"] == user
        status, shown = http_call(url, tenant.token, "GET", f"/Groups/{group}")
    assert status == 200
    assert shown.get("members", []) == []
    assert _member_rows(db, group, user) == 0
    events = _membership_events(db, user)
    assert events[-1] == ("membership.removed", group), events


@pytest.mark.parametrize("method", ["PUT", "PATCH"])
def test_a_user_write_racing_its_delete_is_404_after_it(app, db, tenant, method):
    """A PUT or PATCH of U sent while U's DELETE waits to commit waits for U's row and is
    then 404 (RFC 7644 §3.6), writing nothing: as when the DELETE came first."""
    with live_server(app) as url:
        user = _user(url, tenant, "ada")
        body = ({"schemas": [CORE_USER], "userName": "ada@acme.example", "title": "Boss"}
                if method == "PUT" else {"schemas": [PATCH_OP], "Operations": [
                    {"op": "replace", "path": "title", "value": "Boss"}]})
        with _commits_held(db, tenant):
            delete, deleted = _waiting(db, lambda: http_call(
                url, tenant.token, "DELETE", f"/Users/{user}", timeout=30), 1)
            write, written = _waiting(db, lambda: http_call(
                url, tenant.token, method, f"/Users/{user}", body, timeout=30), 2)
        delete.join(30)
        write.join(30)
    assert deleted["result"][0] == 204, deleted
    assert written["result"][0] == 404, written
    assert rows(db, "SELECT title, status FROM users WHERE id = :u", u=user) == [
        (None, "deleted")]
    assert rows(db, "SELECT count(*) FROM outbox_events WHERE aggregate_id = :u AND "
                    "type = 'user.updated'", u=user)[0][0] == 0


def test_member_deletes_and_group_writes_at_once_neither_deadlock_nor_lose_a_version(
        app, db, tenant):
    """Eight members of two groups deleted while both groups are renamed and have a member
    added, all at once: every request succeeds (no deadlock, no lock timeout), each group's
    members' part moved once per deleted member, and GET shows the version If-None-Match
    then matches."""
    with live_server(app) as url:
        users = [_user(url, tenant, f"u{i}") for i in range(8)]
        extra = [_user(url, tenant, f"x{i}") for i in range(2)]
        groups = [_group(url, tenant, f"G{i}", users) for i in range(2)]
        calls: list[Callable[[], tuple[int, Any]]] = [
            (lambda u=u: http_call(url, tenant.token, "DELETE", f"/Users/{u}", timeout=60))
            for u in users]
        for i, group in enumerate(groups):
            calls.append(lambda g=group, i=i: http_call(
                url, tenant.token, "PATCH", f"/Groups/{g}", {
                    "schemas": [PATCH_OP], "Operations": [
                        {"op": "replace", "path": "displayName", "value": f"H{i}"},
                        {"op": "add", "path": "members",
                         "value": [{"value": extra[i]}]}]}, timeout=60))
        results = at_once(calls, timeout=90)
        assert [status for status, _ in results] == [204] * 8 + [204, 204], results
        for group in groups:
            status, shown = http_call(url, tenant.token, "GET", f"/Groups/{group}")
            assert status == 200
            assert [m["value"] for m in shown["members"]] in ([e] for e in extra)
            own = rows(db, "SELECT version FROM groups WHERE id = :g", g=group)[0][0]
            assert shown["meta"]["version"] == f'W/"{own}.8"'
    assert rows(db, "SELECT version FROM group_member_versions ORDER BY version") == [
        (8,), (8,)]


def test_a_group_delete_racing_its_members_delete_announces_the_removal_once(app, db, tenant):
    """U's DELETE holds U and waits to commit (announcing U's removal from G); G's DELETE
    waits for U's row. Once U's DELETE committed, U is hidden: G's DELETE drops the row
    without announcing the removal a second time (it read who was shown before it held U)."""
    with live_server(app) as url:
        user = _user(url, tenant, "ada")
        group = _group(url, tenant, "Buyers", [user])
        with _commits_held(db, tenant):
            delete, deleted = _waiting(db, lambda: http_call(
                url, tenant.token, "DELETE", f"/Users/{user}", timeout=30), 1)
            drop, dropped = _waiting(db, lambda: http_call(
                url, tenant.token, "DELETE", f"/Groups/{group}", timeout=30), 2)
        delete.join(30)
        drop.join(30)
    assert deleted["result"][0] == 204, deleted
    assert dropped["result"][0] == 204, dropped
    assert _membership_events(db, user) == [("membership.added", group),
                                            ("membership.removed", group)]


def test_a_group_delete_racing_its_members_restore_announces_the_removal(app, db, tenant):
    """U (deleted) is a hidden member of G. U's restore (Entra's re-create) holds U and
    waits to commit (announcing U back in G); G's DELETE waits for U's row. Once the
    restore committed, U is shown: G's DELETE announces its removal, so the portal's last
    word on (G, U) is not a membership that is gone."""
    with live_server(app) as url:
        user = _user(url, tenant, "ada")
        group = _group(url, tenant, "Buyers", [user])
        assert http_call(url, tenant.token, "DELETE", f"/Users/{user}")[0] == 204
        with _commits_held(db, tenant):
            restore, restored = _waiting(db, lambda: http_call(
                url, tenant.token, "POST", "/Users", {
                    "schemas": [CORE_USER], "userName": "ada@acme.example",
                    "externalId": "ext-ada"}, timeout=30), 1)
            drop, dropped = _waiting(db, lambda: http_call(
                url, tenant.token, "DELETE", f"/Groups/{group}", timeout=30), 2)
        restore.join(30)
        drop.join(30)
    assert restored["result"][0] == 201, restored
    assert restored["result"][1]["id"] == user
    assert dropped["result"][0] == 204, dropped
    assert _member_rows(db, group, user) == 0
    assert _membership_events(db, user) == [
        ("membership.added", group), ("membership.removed", group),
        ("membership.added", group), ("membership.removed", group)]
