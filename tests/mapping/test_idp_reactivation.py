"""An IdP's routine ``active: true`` for a user that lost its grants (to the mapping, or
while deactivated) and holds none now: it comes back suspended under ``on_loss``
``deprovision`` and ``suspend`` alike, and resumes when a rule gives it a role again.

Okta sends ``active: true`` with every profile push (a ``PUT`` of the whole user: Okta SCIM
2.0 reference, "Update a specific User (PUT)",
https://developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20/), and Entra sends
``Replace active "True"`` whenever it finds the target's ``active`` differing from the
source (Microsoft Learn, "Tutorial - Develop and plan provisioning for a SCIM endpoint",
https://learn.microsoft.com/en-us/entra/identity/app-provisioning/use-scim-to-provision-users-and-groups).
Both arrive for a user who is still assigned to the app but lost its last mapped group.
"""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.scim.support import PATCH_OP, Scim

RULES = {"policy": {"on_loss": "deprovision"}, "rules": [
    {"id": "buyers", "priority": 10, "role": "buyer", "unit": "Engineering",
     "match": {"group": "Buyers"}},
    {"id": "legal", "priority": 5, "role": "finance", "unit": "Engineering",
     "match": {"attribute": "department", "value": "Legal"}}]}


@pytest.fixture
def scim(client, world):
    """A SCIM client for the tenant, whose mapping deprovisions on the loss of every grant."""
    world.apply(RULES)
    return Scim(client, world.tenant)


def _patch(scim, resource, *operations):
    response = scim.patch(resource, {"schemas": [PATCH_OP], "Operations": list(operations)})
    assert response.status_code in (200, 204), response.get_json()
    return response


def _state(world, user_id):
    [user] = rows(world.db, "SELECT status, active FROM users WHERE id = :u", u=user_id)
    roles = sorted(r.key for r in rows(
        world.db, "SELECT roles.key FROM grants JOIN roles ON roles.id = grants.role_id "
        "WHERE grants.user_id = :u", u=user_id))
    return user.status, bool(user.active), roles


def _events(world, user_id):
    return [r.type for r in rows(world.db, "SELECT type FROM outbox_events WHERE "
                                 "aggregate_id = :u AND type LIKE 'user.%' ORDER BY created_at, "
                                 "id", u=user_id) if r.type != "user.updated"]


def _leaver(scim, world):
    """A user the mapping deprovisioned: removed from Buyers (Entra's legacy removal)."""
    user_id = scim.create_user("ada@acme.example")["id"]
    group_id = scim.create_group("Buyers", [user_id])["id"]
    _patch(scim, f"/Groups/{group_id}", {"op": "Remove", "path": "members",
                                         "value": [{"value": user_id}]})
    assert _state(world, user_id) == ("deprovisioned", False, [])
    return user_id, group_id


def test_okta_profile_push_brings_a_user_the_mapping_took_out_back_suspended(scim, world):
    """Regression: Okta's next profile push (``PUT`` with ``active: true``) reactivated the
    user, active with no grant and able to sign in, where ``on_loss = "suspend"`` left the
    same user suspended. It is suspended now: SCIM shows ``active: true`` as sent (Okta sees
    no drift), the PUT's other attributes apply, and no sign-in is possible."""
    user_id, _ = _leaver(scim, world)
    current = scim.get(f"/Users/{user_id}").get_json()
    current.pop("meta")
    current.update(active=True, title="Buyer II")
    response = scim.put(f"/Users/{user_id}", current)
    assert response.status_code == 200, response.get_json()
    assert (response.get_json()["active"], response.get_json()["title"]) == (True, "Buyer II")
    assert _state(world, user_id) == ("suspended", True, [])
    assert _events(world, user_id)[-2:] == ["user.reactivated", "user.suspended"]
    [suspended] = rows(world.db, "SELECT data FROM audit_events WHERE action = "
                       "'user:suspend' AND subject_id = :u", u=user_id)
    assert "lost_all_grants" in str(suspended.data)


def test_entra_enable_then_group_add_resumes_the_user_with_its_grant(scim, world):
    """Entra's ``Replace active "True"`` suspends the same way; the group added back after
    the activation (the order Okta's reassignment takes too) resumes the user with its
    grant, where holding it deprovisioned would have kept it out for good."""
    user_id, group_id = _leaver(scim, world)
    enable = {"op": "Replace", "path": "active", "value": "True"}
    assert _patch(scim, f"/Users/{user_id}", enable).get_json()["active"] is True
    assert _state(world, user_id) == ("suspended", True, [])

    _patch(scim, f"/Groups/{group_id}", {"op": "Add", "path": "members",
                                         "value": [{"value": user_id}]})
    assert _state(world, user_id) == ("active", True, ["buyer"])
    assert _events(world, user_id)[-2:] == ["user.suspended", "user.resumed"]


def test_a_group_back_before_the_activation_reactivates_at_once(scim, world):
    """Back in a mapped group first, the IdP's ``active: true`` reactivates the user with
    its grant, as before."""
    user_id, group_id = _leaver(scim, world)
    _patch(scim, f"/Groups/{group_id}", {"op": "add", "path": "members",
                                         "value": [{"value": user_id}]})
    assert _state(world, user_id) == ("deprovisioned", False, [])
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": True}})
    assert _state(world, user_id) == ("active", True, ["buyer"])


def test_an_activation_that_itself_makes_a_rule_match_reactivates(scim, world):
    """The user is judged as the request leaves it: a path-less replace setting a
    department a rule grants on, with ``active: true``, reactivates the user."""
    user_id, _ = _leaver(scim, world)
    response = _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {
        "active": True,
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Legal"}})
    assert response.get_json()["active"] is True
    assert _state(world, user_id) == ("active", True, ["finance"])


def test_the_idps_own_deactivation_is_undone_by_its_activation(scim, world):
    """Only the mapping's deprovisioning matters: a user the IdP itself deactivated comes
    back active on its ``active: true`` (with no grant, as a user never in a mapped group)."""
    user_id = scim.create_user("bob@acme.example")["id"]
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": False}})
    assert _state(world, user_id) == ("deprovisioned", False, [])
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": True}})
    assert _state(world, user_id) == ("active", True, [])


def test_under_suspend_a_user_the_idp_deactivated_while_suspended_comes_back_suspended(
        scim, world):
    """``on_loss = "suspend"``: a user out of its last mapped group (suspended) that Okta
    then deactivated (app unassigned) and reactivated (reassigned, before its group is
    pushed again) came back active with no grant; it is suspended again, and resumes with
    its grant when the group is back."""
    world.apply({**RULES, "policy": {"on_loss": "suspend"}})
    user_id = scim.create_user("cy@acme.example")["id"]
    group_id = scim.create_group("Buyers", [user_id])["id"]
    _patch(scim, f"/Groups/{group_id}",
           {"op": "remove", "path": f'members[value eq "{user_id}"]'})
    assert _state(world, user_id) == ("suspended", True, [])
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": False}})
    assert _state(world, user_id) == ("deprovisioned", False, [])
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": True}})
    assert _state(world, user_id) == ("suspended", True, [])
    _patch(scim, f"/Groups/{group_id}", {"op": "add", "path": "members",
                                         "value": [{"value": user_id}]})
    assert _state(world, user_id) == ("active", True, ["buyer"])


def test_a_user_that_lost_its_group_while_deactivated_comes_back_suspended(scim, world):
    """Okta's unassignment deactivates a buyer; its group membership goes meanwhile; the
    reassignment's ``active: true`` found the grants gone and made it active with none. It
    lost every grant across its deprovisioning: suspended (``on_loss = "deprovision"``
    too), and resumed by its group."""
    user_id = scim.create_user("di@acme.example")["id"]
    group_id = scim.create_group("Buyers", [user_id])["id"]
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": False}})
    _patch(scim, f"/Groups/{group_id}",
           {"op": "remove", "path": f'members[value eq "{user_id}"]'})
    assert _state(world, user_id) == ("deprovisioned", False, [])
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": True}})
    assert _state(world, user_id) == ("suspended", True, [])
    _patch(scim, f"/Groups/{group_id}", {"op": "add", "path": "members",
                                         "value": [{"value": user_id}]})
    assert _state(world, user_id) == ("active", True, ["buyer"])


def test_a_policy_of_nothing_reactivates_as_ever(scim, world):
    """``on_loss = "nothing"`` takes nobody out: the IdP's ``active: true`` reactivates the
    user even with no grant left."""
    world.apply({**RULES, "policy": {"on_loss": "nothing"}})
    user_id = scim.create_user("ed@acme.example")["id"]
    group_id = scim.create_group("Buyers", [user_id])["id"]
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": False}})
    _patch(scim, f"/Groups/{group_id}",
           {"op": "remove", "path": f'members[value eq "{user_id}"]'})
    _patch(scim, f"/Users/{user_id}", {"op": "replace", "value": {"active": True}})
    assert _state(world, user_id) == ("active", True, [])
