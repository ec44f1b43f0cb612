"""/api/v1 mapping and access endpoints over HTTP: preview, apply, rule edits, access."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_key
from tests.conftest import rows

BUYERS = {"id": "buyers", "priority": 5, "role": "buyer", "unit": "Engineering",
          "match": {"group": "Buyers"}}


@pytest.fixture
def admin(world):
    """Authorization headers of the tenant's admin key."""
    return make_key(world.db, "admin", world.tenant.org).headers


def grant_count(world):
    """How many grants are stored."""
    return rows(world.db, "SELECT count(*) AS n FROM grants")[0].n


def test_preview_then_put_then_get(world, client, admin):
    """Preview writes nothing; PUT applies and answers the diff; GET returns the rule set."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    res = client.post(url + ":preview", json={"rules": [BUYERS]}, headers=admin)
    assert res.status_code == 200, res.json
    assert res.json["totals"]["grants_added"] == 1
    assert res.json["changes"][0]["gains"][0]["unit"] == "Engineering"
    assert grant_count(world) == 0
    res = client.put(url, json={"rules": [BUYERS], "policy": {"on_loss": "suspend"}},
                     headers=admin)
    assert res.status_code == 200, res.json
    assert grant_count(world) == 1
    res = client.get(url, headers=admin)
    assert res.json["revision"] == 1
    assert res.json["policy"] == {"on_loss": "suspend"}
    assert [r["id"] for r in res.json["rules"]] == ["buyers"]
    audit = rows(world.db, "SELECT actor_type FROM audit_events WHERE action = 'grant:add'")
    assert [a.actor_type for a in audit] == ["api_key"]


def test_refusal_is_409_naming_users_and_force_applies(world, client, admin):
    """Removing everyone's grants is a 409 problem naming the users; ?force=true applies."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    client.put(url, json={"rules": [BUYERS]}, headers=admin)
    res = client.delete(url + "/rules/buyers", headers=admin)
    assert res.status_code == 409
    assert "1 of 1 users" in res.json["detail"]
    assert "alice" in res.json["detail"]
    assert grant_count(world) == 1
    res = client.delete(url + "/rules/buyers?force=true", headers=admin)
    assert res.status_code == 200, res.json
    assert grant_count(world) == 0


def test_rule_edits(world, client, admin):
    """POST adds a rule, PUT replaces it, unknown ids are 404, duplicate ids 409."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    url = f"/api/v1/orgs/{world.org_id}/mapping/rules"
    assert client.post(url, json={"rule": BUYERS}, headers=admin).status_code == 201
    assert client.post(url, json={"rule": BUYERS}, headers=admin).status_code == 409
    changed = dict(BUYERS, parameters={"spending_limit": {"amount": "9", "currency": "EUR"}})
    res = client.put(url + "/buyers", json={"rule": changed}, headers=admin)
    assert res.json["totals"]["grants_updated"] == 1
    assert client.put(url + "/nope", json={"rule": BUYERS}, headers=admin).status_code == 409
    assert client.put(url + "/nope", json={"rule": {**BUYERS, "id": "nope"}},
                      headers=admin).status_code == 404
    assert client.delete(url + "/nope", headers=admin).status_code == 404


@pytest.mark.parametrize(("body", "field"), [
    ({"rules": [{**BUYERS, "role": "pilot"}]}, "rules[0] (buyers).role"),
    ({"rules": [{**BUYERS, "match": {"attribute": "x", "value": "y"}}]},
     "rules[0].match.attribute"),
    ({"rules": "all"}, "rules"),
    ({"rulez": []}, "rulez"),
])
def test_bad_rule_sets_are_400_and_write_nothing(world, client, admin, body, field):
    """Invalid rule sets answer a 400 problem naming the field; nothing is stored."""
    res = client.put(f"/api/v1/orgs/{world.org_id}/mapping", json=body, headers=admin)
    assert res.status_code == 400, res.json
    assert field in str(res.json)
    assert rows(world.db, "SELECT count(*) AS n FROM mapping_rules")[0].n == 0


def test_access_endpoint(world, client, admin):
    """GET /users/{id}/access: grants with unit path, permissions, parameters and why."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    client.put(f"/api/v1/orgs/{world.org_id}/mapping", json={"rules": [BUYERS]},
               headers=admin)
    portal = make_key(world.db, "portal", world.tenant.org).headers
    res = client.get(f"/api/v1/users/{alice}/access", headers=portal)
    assert res.status_code == 200, res.json
    [grant] = res.json["grants"]
    assert grant["unit"]["path"] == "Engineering"
    assert grant["parameters"]["spending_limit"] == {"amount": "1000.00", "currency": "EUR"}
    assert grant["why"]["rule"] == "buyers"
    assert grant["why"]["matched"][0]["group"] == "Buyers"
    assert client.get("/api/v1/users/nope/access", headers=portal).status_code == 404


def test_access_of_another_organizations_user_is_404(world, client, other_tenant):
    """An org-bound key never sees another organization's user."""
    from tests.mapping.conftest import World
    stranger = World(world.db, other_tenant).user("stranger")
    portal = make_key(world.db, "portal", world.tenant.org).headers
    assert client.get(f"/api/v1/users/{stranger}/access", headers=portal).status_code == 404


def test_preview_says_whether_the_apply_would_be_refused(world, client, admin):
    """The API's dry run answers as the apply will: `refused` with the deployment's
    `max_loss_share` (as `roster mapping apply --dry-run` prints); before, a preview of a
    rule set taking everyone's grants was a plain 200 and only the apply a 409."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    assert client.put(url, json={"rules": [BUYERS]}, headers=admin).status_code == 200
    res = client.post(url + ":preview", json={"rules": []}, headers=admin)
    assert res.status_code == 200, res.json
    assert (res.json["refused"], res.json["max_loss_share"]) == (True, 0.2)
    assert res.json["totals"]["users_losing_all"] == 1
    assert client.put(url, json={"rules": []}, headers=admin).status_code == 409
    res = client.post(url + ":preview", json={"rules": [BUYERS]}, headers=admin)
    assert (res.json["refused"], res.json["max_loss_share"]) == (False, 0.2)
    assert "refused" not in client.put(url, json={"rules": [BUYERS]}, headers=admin).json


def test_a_preview_listing_every_change_is_not_truncated(world, client, admin):
    """`changes_truncated` compared the users listed with users gaining plus users losing,
    so a user moving from one unit to another (gaining one grant, losing one) was counted
    twice: a preview listing its one change said it was truncated."""
    alice = world.user("alice")
    world.group("Buyers", [alice])
    url = f"/api/v1/orgs/{world.org_id}/mapping"
    assert client.put(url, json={"rules": [BUYERS]}, headers=admin).status_code == 200
    moved = {**BUYERS, "unit": "Engineering/Tokyo"}
    res = client.post(url + ":preview", json={"rules": [moved]}, headers=admin)
    assert res.status_code == 200, res.json
    assert [(c["user_name"], len(c["gains"]), len(c["loses"])) for c in res.json["changes"]] \
        == [("alice", 1, 1)]
    assert res.json["changes_truncated"] is False
    res = client.put(url, json={"rules": [moved]}, headers=admin)
    assert res.status_code == 200, res.json
    assert res.json["changes_truncated"] is False
