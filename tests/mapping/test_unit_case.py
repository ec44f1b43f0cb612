"""Unit paths are one name in any case, as the mapping matches them: the database enforces it
(migration 0022), so concurrent writes naming a new unit in two cases share one unit."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from app.models import Unit
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.mapping.conftest import World
from tests.mapping.unit_races import CREATE_UNIT_RULES, add_racing_an_add, create_racing_a_create
from tests.scim.support import ENTERPRISE, Scim

RULES = CREATE_UNIT_RULES


def _units_like(world: World, folded: str) -> list[str]:
    """The stored unit paths that are ``folded`` in some case."""
    return sorted(r.path for r in rows(world.db, "SELECT path FROM units")
                  if r.path.lower() == folded)


def _grant_paths(world: World) -> list[tuple[str, str]]:
    return [(r.user_name, r.path) for r in rows(
        world.db, "SELECT users.user_name, units.path FROM grants "
        "JOIN users ON users.id = grants.user_id JOIN units ON units.id = grants.unit_id "
        "ORDER BY users.user_name")]


def test_sequential_creates_in_two_cases_share_one_unit(client, world):
    """`Dept` then `dept`: the second create finds the unit ignoring case."""
    world.apply(RULES)
    scim = Scim(client, world.tenant)
    scim.create_user("a@acme.example", externalId="a", **{ENTERPRISE: {"department": "Dept"}})
    scim.create_user("b@acme.example", externalId="b", **{ENTERPRISE: {"department": "dept"}})
    assert _units_like(world, "departments/dept") == ["Departments/Dept"]
    assert _grant_paths(world) == [("a@acme.example", "Departments/Dept"),
                                   ("b@acme.example", "Departments/Dept")]


def test_a_create_racing_one_in_another_case_uses_its_unit(app, world, dialect):
    """PostgreSQL: a SCIM create whose department (`newdept`) another open transaction has
    just created as `NewDept` waits for that commit, then uses that unit: 201, one unit,
    one `unit:create` (before: a second unit, `Departments/newdept`)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the second create sees the unit")
    status, created = create_racing_a_create(app, world, "NewDept", "newdept")
    assert status == 201, created
    assert _units_like(world, "departments/newdept") == ["Departments/NewDept"]
    assert _grant_paths(world) == [("alice@acme.example", "Departments/NewDept"),
                                   ("bob@acme.example", "Departments/NewDept")]
    creates = rows(world.db, "SELECT count(*) AS n FROM audit_events "
                             "WHERE action = 'unit:create' AND subject_id IN "
                             "(SELECT id FROM units WHERE path = 'Departments/NewDept')")
    assert creates[0].n == 1


def test_adding_a_unit_in_another_case_is_a_409(client, world):
    """POST /api/v1/orgs/{id}/units `sales` under Departments, where `Sales` exists: 409
    naming the path (before: a second unit the mapping could not tell apart)."""
    key = make_key(world.db, "admin", world.tenant.org)
    response = client.post(f"/api/v1/orgs/{world.org_id}/units", headers=key.headers,
                           json={"name": "SALES", "kind": "department",
                                 "parent": "Departments"})
    assert response.status_code == 409, response.get_json()
    assert "already exists" in response.get_json()["detail"]
    assert _units_like(world, "departments/sales") == ["Departments/Sales"]


def test_the_database_refuses_two_paths_differing_in_case(world):
    """The unique index is on the folded path (app.sql.fold), not only in the code."""
    with pytest.raises(sa.exc.IntegrityError), world.db.transaction() as s:
        s.add(Unit(organization_id=world.org_id, kind="department", name="engineering",
                   path="engineering"))
        s.flush()


def test_an_explicit_add_racing_one_in_another_case_is_a_409(client, world, dialect):
    """PostgreSQL: POST units `OSAKA` while another open transaction adds `Osaka`: 409 once
    that commits, not a 500 nor a second unit."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the check sees the unit")
    response = add_racing_an_add(client, world, "Osaka", "OSAKA")
    assert response.status_code == 409, response.get_json()
    assert _units_like(world, "engineering/osaka") == ["Engineering/Osaka"]


def test_a_parent_named_in_another_case_is_found(client, world):
    """POST units with `parent: "engineering"` where `Engineering` exists: 201 under it, as
    every other use of a path ignores case (before: 404 "unit 'engineering' does not exist")."""
    key = make_key(world.db, "admin", world.tenant.org)
    response = client.post(f"/api/v1/orgs/{world.org_id}/units", headers=key.headers,
                           json={"name": "Osaka", "kind": "location", "parent": "engineering"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["path"] == "Engineering/Osaka"


def test_paths_the_database_keeps_apart_stay_apart_in_the_mapping(client, world):
    """`Straße` and `STRASSE` are two units to the database (its fold, like PostgreSQL's
    lower(), keeps `ß`); a department `straße` is the first, not the second, which
    `str.casefold` (`strasse` for both) picked before."""
    key = make_key(world.db, "admin", world.tenant.org)
    for name in ("STRASSE", "Straße"):
        response = client.post(f"/api/v1/orgs/{world.org_id}/units", headers=key.headers,
                               json={"name": name, "kind": "department",
                                     "parent": "Departments"})
        assert response.status_code == 201, response.get_json()
    world.apply(RULES)
    scim = Scim(client, world.tenant)
    scim.create_user("a@acme.example", externalId="a", **{ENTERPRISE: {"department": "straße"}})
    scim.create_user("b@acme.example", externalId="b", **{ENTERPRISE: {"department": "strasse"}})
    assert _grant_paths(world) == [("a@acme.example", "Departments/Straße"),
                                   ("b@acme.example", "Departments/STRASSE")]
    assert _units_like(world, "departments/strasse") == ["Departments/STRASSE"]


MARKETING_RULES = {"policy": {"on_loss": "nothing"}, "rules": [
    {"id": "dept", "role": "buyer",
     "unit_from": {"attribute": "department", "under": "Departments"},
     "match": {"attribute": "department", "present": True}}]}


def test_a_unit_a_rule_names_by_attribute_grants_once_added(client, world):
    """A rule granting in the user's department under Departments (no create_unit) skips a
    department without a unit; adding that unit through the API gives its users the grant
    at once, in any case of the value (before: only their next IdP write did)."""
    world.apply(MARKETING_RULES)
    scim = Scim(client, world.tenant)
    scim.create_user("m@acme.example", externalId="m", **{ENTERPRISE: {"department": "marketing"}})
    scim.create_user("s@acme.example", externalId="s", **{ENTERPRISE: {"department": "Sales"}})
    assert _grant_paths(world) == [("s@acme.example", "Departments/Sales")]
    key = make_key(world.db, "admin", world.tenant.org)
    response = client.post(f"/api/v1/orgs/{world.org_id}/units", headers=key.headers,
                           json={"name": "Marketing", "kind": "department",
                                 "parent": "Departments"})
    assert response.status_code == 201, response.get_json()
    assert _grant_paths(world) == [("m@acme.example", "Departments/Marketing"),
                                   ("s@acme.example", "Departments/Sales")]
    # The grant is announced like any other: an audit event and an outbox event.
    assert rows(world.db, "SELECT count(*) AS n FROM audit_events WHERE action = 'grant:add'"
                          " AND subject_id IN (SELECT id FROM users WHERE user_name = "
                          "'m@acme.example')")[0].n == 1


def test_a_unit_no_rule_reaches_is_added_alone(client, world):
    """A unit outside every rule's reach (not directly under a rule's `under`) is only
    added: no pass over the organization, no grant written."""
    world.apply(MARKETING_RULES)
    scim = Scim(client, world.tenant)
    scim.create_user("t@acme.example", externalId="t", **{ENTERPRISE: {"department": "Tokyo"}})
    key = make_key(world.db, "admin", world.tenant.org)
    response = client.post(f"/api/v1/orgs/{world.org_id}/units", headers=key.headers,
                           json={"name": "Osaka", "kind": "location", "parent": "Engineering"})
    assert response.status_code == 201, response.get_json()
    assert _grant_paths(world) == []
