"""A change of the rule deciding a grant reaches the portal as ``grant.updated`` even when
the parameters stay the same: the grant's ``source`` changed, and the portal sees it."""

from __future__ import annotations

from tests.api.conftest import make_key
from tests.conftest import rows
from tests.events.portal import PortalFeed
from tests.scim.support import ENTERPRISE, Scim

LIMIT = {"spending_limit": {"amount": "500.00", "currency": "EUR"}}


def _rules(first: int, second: int, second_limit: dict | None = None) -> dict:
    return {"policy": {"on_loss": "nothing"}, "rules": [
        {"id": "buyers", "priority": first, "role": "buyer", "unit": "Engineering",
         "match": {"group": "Buyers"}, "parameters": LIMIT},
        {"id": "staff", "priority": second, "role": "buyer", "unit": "Engineering",
         "match": {"group": "Staff"}, "parameters": second_limit or LIMIT}]}


def _grant_events(events: list[dict]) -> list[dict]:
    return [e for e in events if e["type"].startswith("grant.")]


def test_a_new_deciding_rule_with_equal_parameters_is_a_grant_update(world, client):
    """Two rules give alice the same buyer grant with the same limit; lowering the deciding
    rule's priority hands the grant to the other: `grant.updated` with the new `source`,
    `source_before`, and `parameters_before` equal to `parameters`."""
    scim = Scim(client, world.tenant)
    admin = make_key(world.db, "admin", world.tenant.org).headers
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    alice = scim.create_user("alice@acme.example", **{ENTERPRISE: {}})["id"]
    scim.create_group("Buyers", [alice])
    scim.create_group("Staff", [alice])
    assert client.put(url, json=_rules(10, 5), headers=admin).status_code == 200
    feed = PortalFeed.of(client, world.db, world.tenant.org)
    [added] = _grant_events(feed.new())
    assert (added["type"], added["data"]["source"]) == ("grant.added", "rule:buyers")

    assert client.put(url, json=_rules(1, 5), headers=admin).status_code == 200
    stored = rows(world.db, "SELECT source FROM grants WHERE user_id = :u", u=alice)
    assert [r.source for r in stored] == ["rule:staff"]
    [updated] = _grant_events(feed.new())
    assert updated["type"] == "grant.updated"
    assert updated["aggregate_id"] == alice
    data = updated["data"]
    assert (data["source"], data["source_before"]) == ("rule:staff", "rule:buyers")
    assert data["parameters"] == data["parameters_before"] == added["data"]["parameters"]
    assert data["grant_id"] == added["data"]["grant_id"]
    access = client.get(f"/api/v1/users/{alice}/access", headers=admin).get_json()
    assert access["grants"][0]["why"]["rule"] == "staff"


def test_a_parameter_change_by_the_same_rule_keeps_its_source(world, client):
    """A limit changed by the rule that decides names that rule as `source` and
    `source_before`, with the old limit in `parameters_before`."""
    scim = Scim(client, world.tenant)
    admin = make_key(world.db, "admin", world.tenant.org).headers
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    alice = scim.create_user("alice@acme.example", **{ENTERPRISE: {}})["id"]
    scim.create_group("Staff", [alice])
    assert client.put(url, json=_rules(10, 5), headers=admin).status_code == 200
    feed = PortalFeed.of(client, world.db, world.tenant.org)
    feed.skip()
    more = {"spending_limit": {"amount": "900.00", "currency": "EUR"}}
    assert client.put(url, json=_rules(10, 5, more), headers=admin).status_code == 200
    [updated] = _grant_events(feed.new())
    data = updated["data"]
    assert updated["type"] == "grant.updated"
    assert (data["source"], data["source_before"]) == ("rule:staff", "rule:staff")
    assert data["parameters"]["spending_limit"] == more["spending_limit"]
    assert data["parameters_before"]["spending_limit"] == LIMIT["spending_limit"]


def test_a_new_reason_alone_sends_no_event(world, client):
    """A new priority of the deciding rule changes only the grant's reason (the "why" of
    the access answer): audited as `grant:update`, but the portal hears nothing."""
    scim = Scim(client, world.tenant)
    admin = make_key(world.db, "admin", world.tenant.org).headers
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    alice = scim.create_user("alice@acme.example", **{ENTERPRISE: {}})["id"]
    scim.create_group("Buyers", [alice])
    assert client.put(url, json=_rules(10, 5), headers=admin).status_code == 200
    feed = PortalFeed.of(client, world.db, world.tenant.org)
    feed.skip()
    assert client.put(url, json=_rules(20, 5), headers=admin).status_code == 200
    audited = rows(world.db, "SELECT count(*) AS n FROM audit_events "
                             "WHERE action = 'grant:update'")
    assert audited[0].n == 1
    assert _grant_events(feed.new()) == []
