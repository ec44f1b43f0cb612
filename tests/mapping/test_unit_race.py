"""Concurrent writes needing the same new unit (PostgreSQL): created once, used by all.

A `create_unit` rule makes the unit a user's department names. Two SCIM creates with the
same new department both found it missing, both inserted it, and the later insert met
uq_units_org_path once the first committed: a 500 (or a `409 uniqueness` naming the unit,
which told the IdP the *user* existed). Now the later one uses the unit the first created;
only the creator audits `unit:create`. An explicit unit add of a path added meanwhile is
still a 409 (not a 500).
"""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.mapping.conftest import World
from tests.mapping.unit_races import CREATE_UNIT_RULES, add_racing_an_add, create_racing_a_create
from tests.scim.support import ENTERPRISE, at_once, http_call, live_server, user_body

RULES = CREATE_UNIT_RULES


def _dept_grants(world: World) -> list[tuple[str, str]]:
    return [(r.user_name, r.path) for r in rows(
        world.db, "SELECT users.user_name, units.path FROM grants "
        "JOIN users ON users.id = grants.user_id JOIN units ON units.id = grants.unit_id "
        "ORDER BY users.user_name")]


def _unit_creates(world: World, path: str) -> int:
    return sum(1 for r in rows(world.db, "SELECT data FROM audit_events "
                                         "WHERE action = 'unit:create'")
               if path in str(r.data))


def test_a_create_needing_a_unit_another_transaction_is_creating_uses_it(app, world,
                                                                         dialect):
    """A SCIM create whose new department another open transaction just created: its
    insert waits for that commit, then it uses that unit (before: a 500)."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the second create sees the unit")
    status, created = create_racing_a_create(app, world, "NewDept1", "NewDept1")
    assert status == 201, created
    assert _dept_grants(world) == [("alice@acme.example", "Departments/NewDept1"),
                                   ("bob@acme.example", "Departments/NewDept1")]
    assert rows(world.db, "SELECT count(*) AS n FROM units WHERE path = "
                          "'Departments/NewDept1'")[0].n == 1
    assert _unit_creates(world, "Departments/NewDept1") == 1


def test_six_concurrent_creates_with_one_new_department(app, world):
    """Six POST /Users at once with the same new department (the reported case): all 201,
    one unit, one `unit:create`, every user granted there. The race is not forced here
    (the test above forces it): this one may pass on the old code by luck."""
    world.apply(RULES)
    token = world.tenant.token
    with live_server(app) as url:
        statuses = at_once([
            lambda i=i: http_call(url, token, "POST", "/Users", user_body(
                f"u{i}@acme.example", externalId=f"x{i}",
                **{ENTERPRISE: {"department": "NewDept1"}}))[0]
            for i in range(6)])
    assert statuses == [201] * 6
    assert _dept_grants(world) == [(f"u{i}@acme.example", "Departments/NewDept1")
                                   for i in range(6)]
    assert _unit_creates(world, "Departments/NewDept1") == 1


def test_an_explicit_unit_add_racing_another_is_a_409(client, world, dialect):
    """POST /api/v1/orgs/{id}/units for a path another open transaction just added: 409
    once that commits (before: a 500); the operator's duplicate stays an error."""
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: the check sees the unit")
    response = add_racing_an_add(client, world, "Osaka", "Osaka")
    assert response.status_code == 409, response.get_json()
    assert "already exists" in response.get_json()["detail"]
    assert _unit_creates(world, "Engineering/Osaka") == 1
