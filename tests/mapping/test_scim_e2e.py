"""End to end over SCIM HTTP: PATCHes move grants, with audit and outbox rows, atomically."""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.scim.support import ENTERPRISE, PATCH_OP, Scim, user_body

RULES = {"policy": {"on_loss": "nothing"}, "rules": [
    {"id": "tokyo", "priority": 10, "role": "buyer", "unit": "Engineering/Tokyo",
     "match": {"group": "Tokyo Buyers"}},
    {"id": "sales", "priority": 5, "role": "finance", "unit": "Engineering",
     "match": {"group": "Finance"}},
    {"id": "dept", "priority": 1, "role": "technician", "create_unit": True,
     "unit_from": {"attribute": "department", "under": "Departments"},
     "match": {"attribute": "department", "present": True}},
]}


@pytest.fixture
def scim(client, world):
    """A SCIM client for the tenant with units and rules."""
    world.apply(RULES)
    return Scim(client, world.tenant)


def patch(scim, resource, *operations):
    """Send one PATCH request (RFC 7644 §3.5.2)."""
    return scim.patch(resource, {"schemas": [PATCH_OP], "Operations": list(operations)})


def grants(world, user_id):
    """(role, unit path, source) of the user's grants."""
    return sorted((r.key, r.path, r.source) for r in rows(
        world.db, "SELECT roles.key, units.path, grants.source FROM grants JOIN roles ON "
        "roles.id = grants.role_id JOIN units ON units.id = grants.unit_id "
        "WHERE grants.user_id = :u", u=user_id))


def request_of(world, action):
    """request_id of each audit event with this action, oldest first."""
    return [r.request_id for r in rows(world.db, "SELECT request_id FROM audit_events WHERE "
                                       "action = :a ORDER BY seq", a=action)]


def event_types(world):
    """Types of grant outbox events, oldest first."""
    return [r.type for r in rows(world.db, "SELECT type FROM outbox_events WHERE type LIKE "
                                 "'grant.%' ORDER BY created_at, id")]


def test_group_patches_move_a_user_between_groups(world, scim):
    """Leaving Tokyo Buyers and joining Finance: each PATCH changes grants, audit and outbox
    in its own request's transaction."""
    alice = scim.create_user("alice@acme.example", **{ENTERPRISE: {}})["id"]
    tokyo = scim.create_group("Tokyo Buyers", [alice])["id"]
    finance = scim.create_group("Finance")["id"]
    assert grants(world, alice) == [("buyer", "Engineering/Tokyo", "rule:tokyo")]
    assert patch(scim, f"/Groups/{tokyo}",
                 {"op": "remove", "path": f'members[value eq "{alice}"]'}).status_code in (200, 204)
    assert grants(world, alice) == []
    assert patch(scim, f"/Groups/{finance}",
                 {"op": "add", "path": "members", "value": [{"value": alice}]}
                 ).status_code in (200, 204)
    assert grants(world, alice) == [("finance", "Engineering", "rule:sales")]
    assert event_types(world) == ["grant.added", "grant.removed", "grant.added"]
    # The grant change was written by the same request as the membership change.
    assert request_of(world, "grant:remove") == request_of(world, "membership:remove")
    assert request_of(world, "grant:add")[-1] == request_of(world, "membership:add")[-1]
    assert None not in request_of(world, "grant:add")


def test_user_patch_moves_grant_between_derived_units(world, scim):
    """A department change in one PATCH removes the old unit's grant and adds the new one."""
    body = user_body("bob@acme.example", **{ENTERPRISE: {"department": "Sales"}})
    bob = scim.post("/Users", json=body).get_json()["id"]
    assert grants(world, bob) == [("technician", "Departments/Sales", "rule:dept")]
    response = patch(scim, f"/Users/{bob}", {"op": "replace", "path": f"{ENTERPRISE}:department",
                                              "value": "Legal"})
    assert response.status_code == 200, response.get_json()
    assert grants(world, bob) == [("technician", "Departments/Legal", "rule:dept")]
    [remove_req] = request_of(world, "grant:remove")
    assert remove_req == request_of(world, "grant:add")[-1] == request_of(world, "unit:create"
                                                                          )[-1]


def test_failed_patch_leaves_old_grants_intact(world, scim):
    """A PATCH that removes the member and then fails is rolled back: grants, audit, outbox."""
    alice = scim.create_user("alice@acme.example", **{ENTERPRISE: {}})["id"]
    tokyo = scim.create_group("Tokyo Buyers", [alice])["id"]
    before = (grants(world, alice), event_types(world),
              rows(world.db, "SELECT count(*) AS n FROM audit_events")[0].n)
    response = patch(scim, f"/Groups/{tokyo}",
                     {"op": "remove", "path": f'members[value eq "{alice}"]'},
                     {"op": "add", "path": "members", "value": [{"value": "ghost"}]})
    assert response.status_code == 400
    assert (grants(world, alice), event_types(world),
            rows(world.db, "SELECT count(*) AS n FROM audit_events")[0].n) == before
    assert before[0] == [("buyer", "Engineering/Tokyo", "rule:tokyo")]


def test_group_rename_over_scim_reevaluates(world, scim):
    """Renaming a group over SCIM takes away the grants its old name gave."""
    alice = scim.create_user("alice@acme.example", **{ENTERPRISE: {}})["id"]
    tokyo = scim.create_group("Tokyo Buyers", [alice])["id"]
    assert patch(scim, f"/Groups/{tokyo}", {"op": "replace", "path": "displayName",
                                             "value": "Osaka Buyers"}).status_code in (200, 204)
    assert grants(world, alice) == []



@pytest.mark.parametrize("department", ["   ", "\t"])
def test_a_blank_value_names_no_unit_and_gives_no_grant_not_an_error(world, scim,
                                                                     department):
    """A unit_from value that is only white space names no unit: the rule leaves that user
    out, as for a value holding '/', and the IdP's create and PATCH succeed. (Before, the
    rule tried to create a unit with an empty name and the create was a 400.)"""
    units = rows(world.db, "SELECT count(*) AS n FROM units")[0].n
    body = user_body("dora@acme.example", **{ENTERPRISE: {"department": department}})
    response = scim.post("/Users", json=body)
    assert response.status_code == 201, response.get_json()
    user_id = response.get_json()["id"]
    assert grants(world, user_id) == []
    moved = patch(scim, f"/Users/{user_id}", {"op": "replace",
                                               "path": f"{ENTERPRISE}:department",
                                               "value": "Legal"})
    assert moved.status_code == 200, moved.get_json()
    assert grants(world, user_id) == [("technician", "Departments/Legal", "rule:dept")]
    blank = patch(scim, f"/Users/{user_id}", {"op": "replace",
                                               "path": f"{ENTERPRISE}:department",
                                               "value": department})
    assert blank.status_code == 200, blank.get_json()
    assert grants(world, user_id) == []
    assert rows(world.db, "SELECT count(*) AS n FROM units")[0].n == units + 1


def test_a_create_shows_the_grants_of_its_first_evaluation_and_reads_none_it_lacks(
        world, scim):
    """The 201 of a create shows the grants its first evaluation gave (its access extension
    equals a GET's); a create granted nothing reads no grants (a new id holds no other)."""
    from tests.scim.test_groups import _Statements

    access = "urn:roster:params:scim:schemas:extension:access:2.0:User"
    response = scim.post("/Users", json=user_body("gina@acme.example",
                                                  **{ENTERPRISE: {"department": "Legal"}}))
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert [(g["role"], g["unitPath"]) for g in created[access]["grants"]] == [
        ("technician", "Departments/Legal")]
    assert created[access] == scim.get(f"/Users/{created['id']}").get_json()[access]
    with _Statements(world.db.engine) as log:
        plain = scim.post("/Users", json=user_body("hank@acme.example",
                                                   **{ENTERPRISE: {"costCenter": "CC-2"}}))
    assert plain.status_code == 201, plain.get_json()
    assert access not in plain.get_json()
    assert access not in scim.get(f"/Users/{plain.get_json()['id']}").get_json()
    # The idle check of the evaluation reads grants in an EXISTS; the render query is gone.
    assert not [s for s in log.seen if "units.name, units.path" in s], log.seen
