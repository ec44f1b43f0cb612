"""Concurrent writes naming one new unit (PostgreSQL), for tests/mapping/test_unit_race.py
and test_unit_case.py: a `create_unit` rule, and a SCIM create (or a unit add) started while
another open transaction has just created that unit."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from app.directory.organizations import add_unit
from app.directory.users import UserInput, create_user
from app.models import Directory, Organization
from tests.api.conftest import make_key
from tests.conftest import OPERATOR
from tests.lockwait import started
from tests.mapping.conftest import World
from tests.scim.support import ENTERPRISE, http_call, live_server, user_body

# A buyer grant in the unit the user's department names under Departments, created if new.
CREATE_UNIT_RULES = {"policy": {"on_loss": "nothing"}, "rules": [
    {"id": "dept", "role": "buyer", "create_unit": True,
     "unit_from": {"attribute": "department", "under": "Departments"},
     "match": {"attribute": "department", "present": True}}]}


def create_racing_a_create(app: Flask, world: World, held: str, posted: str) -> Any:
    """alice (department ``held``) created in an open transaction, whose unit insert bob's
    POST /Users (department ``posted``) waits for; then the commit. Bob's status and body."""
    world.apply(CREATE_UNIT_RULES)
    body = user_body("bob@acme.example", **{ENTERPRISE: {"department": posted}})
    with live_server(app) as url:
        with world.db.transaction() as s:
            create_user(s, s.get(Directory, world.tenant.directory.id), UserInput(
                {"user_name": "alice@acme.example", "department": held}), OPERATOR)
            post, outcome = started(world.db, lambda: http_call(
                url, world.tenant.token, "POST", "/Users", body))
        post.join(30)
    return outcome["result"]


def add_racing_an_add(client: FlaskClient, world: World, held: str, posted: str) -> Any:
    """Unit ``held`` added under Engineering in an open transaction, while POST
    /api/v1/orgs/{id}/units adds ``posted`` there and waits for it; then the commit. The
    API's response."""
    key = make_key(world.db, "admin", world.tenant.org)
    with world.db.transaction() as s:
        add_unit(s, s.get(Organization, world.org_id), held, "location", "Engineering",
                 OPERATOR)
        post, outcome = started(world.db, lambda: client.post(
            f"/api/v1/orgs/{world.org_id}/units", headers=key.headers,
            json={"name": posted, "kind": "location", "parent": "Engineering"}))
    post.join(30)
    return outcome["result"]
