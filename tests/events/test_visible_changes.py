"""What SCIM shows the portal changes when a user is deleted or restored, and the portal
hears of it: its reports' manager (``user.updated``) and its groups' members
(``membership.removed`` / ``membership.added``), read from the pull feed over HTTP."""

from __future__ import annotations

import time
from dataclasses import replace

import sqlalchemy as sa

from app.events.delivery import WebhookConfig
from app.events.worker import run_once
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.events.portal import PortalFeed, brief
from tests.events.receiver import SECRET, running_receiver
from tests.scim.support import ENTERPRISE, PATCH_OP, Scim, user_body


def _user(scim: Scim, name: str, manager: str | None = None) -> str:
    extra = {ENTERPRISE: {"manager": {"value": manager}}} if manager else {ENTERPRISE: {}}
    return scim.create_user(f"{name}@acme.example", externalId=f"ext-{name}", **extra)["id"]


def _manager_of(scim: Scim, user_id: str) -> str | None:
    response = scim.get(f"/Users/{user_id}")
    assert response.status_code == 200
    return (response.get_json().get(ENTERPRISE) or {}).get("manager", {}).get("value")


def _members(scim: Scim, group_id: str) -> set[str]:
    response = scim.get(f"/Groups/{group_id}")
    assert response.status_code == 200
    return {m["value"] for m in response.get_json().get("members") or []}


def _manager_updates(events: list[dict]) -> dict[str, list[str]]:
    return {e["aggregate_id"]: e["data"]["changed"] for e in events
            if e["type"] == "user.updated" and e["data"]["changed"] == ["manager_id"]}


def _restore(scim: Scim, name: str) -> str:
    response = scim.post("/Users", user_body(f"{name}@acme.example", externalId=f"ext-{name}",
                                             **{ENTERPRISE: {}}))
    assert response.status_code == 201, response.get_json()
    return response.get_json()["id"]


def test_deleting_and_restoring_a_manager_updates_each_report(client, db, tenant):
    """A SCIM DELETE hides the manager from its reports' `manager`; the re-creation within
    retention shows it again: each live report gets `user.updated` (manager_id) both times,
    after the manager's own events, and a deleted report gets nothing."""
    scim, feed = Scim(client, tenant), PortalFeed.of(client, db, tenant.org)
    boss = _user(scim, "boss")
    reports = sorted(_user(scim, f"r{i}", boss) for i in range(3))
    gone = _user(scim, "gone", boss)
    assert scim.delete(f"/Users/{gone}").status_code == 204
    feed.skip()

    assert scim.delete(f"/Users/{boss}").status_code == 204
    assert [_manager_of(scim, r) for r in reports] == [None] * 3
    events = feed.new()
    assert _manager_updates(events) == {r: ["manager_id"] for r in reports}
    assert [e["data"]["user_id"] for e in events if e["type"] == "user.updated"] == reports
    types = [t for t, _ in brief(events)]
    assert types.index("user.deprovisioned") < types.index("user.updated")

    assert _restore(scim, "boss") == boss
    assert [_manager_of(scim, r) for r in reports] == [boss] * 3
    events = feed.new()
    assert _manager_updates(events) == {r: ["manager_id"] for r in reports}
    types = [t for t, aggregate in brief(events) if aggregate != boss or t != "user.updated"]
    assert types == ["user.reactivated"] + ["user.updated"] * 3


def test_operator_reactivation_of_a_deleted_manager_updates_each_report(client, db, tenant):
    """POST /api/v1/users/{id}/reactivate of a SCIM-deleted manager gives the reports their
    manager back, and the portal hears it per report."""
    scim, feed = Scim(client, tenant), PortalFeed.of(client, db, tenant.org)
    boss = _user(scim, "boss")
    report = _user(scim, "report", boss)
    assert scim.delete(f"/Users/{boss}").status_code == 204
    feed.skip()
    admin = make_key(db, "admin", tenant.org).headers
    assert client.post(f"/api/v1/users/{boss}/reactivate", headers=admin).status_code == 200
    assert _manager_of(scim, report) == boss
    assert _manager_updates(feed.new()) == {report: ["manager_id"]}


def test_deprovisioning_a_manager_changes_no_report(client, db, tenant):
    """active=false leaves the manager visible in its reports' `manager`: no report event."""
    scim, feed = Scim(client, tenant), PortalFeed.of(client, db, tenant.org)
    boss = _user(scim, "boss")
    report = _user(scim, "report", boss)
    feed.skip()
    response = scim.patch(f"/Users/{boss}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]})
    assert response.status_code in (200, 204)
    assert _manager_of(scim, report) == boss
    assert _manager_updates(feed.new()) == {}


def test_a_manager_with_many_reports_costs_the_same_statements(client, db, tenant):
    """The reports are found and announced set-wise: deleting a manager of 40 reports runs
    as many statements finding reports and writing events as deleting one of 2."""
    scim = Scim(client, tenant)

    def statements_of_delete(name: str, count: int) -> int:
        boss = _user(scim, name)
        for i in range(count):
            _user(scim, f"{name}-r{i}", boss)
        seen: list[str] = []

        def count_one(conn, cursor, statement, parameters, context, executemany):
            if "outbox_events" in statement or "manager_id =" in statement:
                seen.append(statement)

        sa.event.listen(db.engine, "before_cursor_execute", count_one)
        try:
            assert scim.delete(f"/Users/{boss}").status_code == 204
        finally:
            sa.event.remove(db.engine, "before_cursor_execute", count_one)
        return len(seen)

    assert statements_of_delete("small", 2) == statements_of_delete("big", 40)
    announced = rows(db, "SELECT count(*) AS n FROM outbox_events WHERE type = 'user.updated'")
    assert announced[0].n == 42


def test_deleting_and_restoring_a_user_changes_its_groups_members(client, db, tenant):
    """A SCIM-deleted user leaves GET /Groups/{id} members (its memberships are kept for a
    restore): `membership.removed` per group, after `user.deprovisioned`; the restore puts
    it back: `membership.added` per group, after `user.reactivated`."""
    scim, feed = Scim(client, tenant), PortalFeed.of(client, db, tenant.org)
    alice, bob = _user(scim, "alice"), _user(scim, "bob")
    first = scim.create_group("First", [alice, bob])["id"]
    second = scim.create_group("Second", [alice])["id"]
    scim.create_group("Third", [bob])
    feed.skip()

    assert scim.delete(f"/Users/{alice}").status_code == 204
    assert _members(scim, first) == {bob}
    assert _members(scim, second) == set()
    events = feed.new()
    removed = {e["aggregate_id"]: e["data"] for e in events
               if e["type"] == "membership.removed"}
    assert removed == {first: {"group_id": first, "user_ids": [alice]},
                       second: {"group_id": second, "user_ids": [alice]}}
    types = [t for t, _ in brief(events)]
    assert types.index("user.deprovisioned") < types.index("membership.removed")

    assert _restore(scim, "alice") == alice
    assert _members(scim, first) == {alice, bob}
    events = feed.new()
    added = {e["aggregate_id"]: e["data"] for e in events if e["type"] == "membership.added"}
    assert added == {first: {"group_id": first, "user_ids": [alice]},
                     second: {"group_id": second, "user_ids": [alice]}}
    types = [t for t, _ in brief(events)]
    assert types.index("user.reactivated") < types.index("membership.added")


def test_deprovisioning_keeps_the_groups_members(client, db, tenant):
    """active=false keeps the user in GET /Groups/{id} members: no membership event."""
    scim, feed = Scim(client, tenant), PortalFeed.of(client, db, tenant.org)
    alice = _user(scim, "alice")
    group = scim.create_group("First", [alice])["id"]
    feed.skip()
    response = scim.patch(f"/Users/{alice}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "value": {"active": False}}]})
    assert response.status_code in (200, 204)
    assert _members(scim, group) == {alice}
    assert not [e for e in feed.new() if e["type"].startswith("membership.")]


def test_webhooks_carry_the_same_events_as_the_feed(client, db, tenant):
    """A worker posts the reports' `user.updated` and the groups' `membership.removed` of a
    manager's DELETE to a real receiver, signed, with the bodies the pull feed serves."""
    scim, feed = Scim(client, tenant), PortalFeed.of(client, db, tenant.org)
    boss = _user(scim, "boss")
    report = _user(scim, "report", boss)
    group = scim.create_group("Team", [boss, report])["id"]
    assert scim.delete(f"/Users/{boss}").status_code == 204
    served = feed.new()
    config = WebhookConfig(urls=("",), secret=SECRET, timeout_seconds=5, retry_base_seconds=1,
                           retry_max_seconds=2, dead_after_seconds=3600, lease_seconds=30,
                           batch_size=50, poll_interval_ms=50)
    with running_receiver() as receiver:
        config = replace(config, urls=(receiver.url,))
        deadline = time.monotonic() + 15
        while len(receiver.processed) < len(served) and time.monotonic() < deadline:
            if not run_once(db, config, "test-worker"):
                time.sleep(0.05)
        posted = {r["event"]["id"]: r["event"] for r in receiver.requests}
    assert receiver.bad_signatures == 0
    assert [posted.get(e["id"]) for e in served] == served
    assert ("user.updated", report) in brief(served)
    assert ("membership.removed", group) in brief(served)
