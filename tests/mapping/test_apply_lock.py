"""A rule-set apply against concurrent writes (PostgreSQL): the organization's mapping lock.

Before, a SCIM create running while an apply re-evaluated the organization evaluated its
user under the old rules (the apply had not committed), and the apply's batches never saw
that user: it kept grants of a rule that no longer existed. Now the apply holds the
organization's mapping lock exclusively and every SCIM write holds it shared from its
first statement, so one waits for the other and every user ends under the new rules.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from app.directory.users import UserInput, create_user
from app.lifecycle import Trigger, deprovision_user
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Directory, Organization, User
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, rows
from tests.lockwait import started
from tests.mapping.conftest import World
from tests.mapping.test_group_write_locks import _Statements
from tests.scim.support import (
    CORE_GROUP,
    ENTERPRISE,
    PATCH_OP,
    SCIM,
    http_call,
    live_server,
    user_body,
)
from tests.threads import background

SALES = {"attribute": "department", "value": "Sales"}
OLD = {"policy": {"on_loss": "nothing"},
       "rules": [{"id": "old", "role": "buyer", "unit": "Engineering", "match": SALES}]}
NEW = {"policy": {"on_loss": "nothing"},
       "rules": [{"id": "new", "role": "technician", "unit": "Departments/Sales",
                  "match": SALES}]}
UNDER_NEW = [("technician", "Departments/Sales", "rule:new")]


@pytest.fixture(autouse=True)
def _postgresql_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: an apply and a write never overlap")


def _grants(world: World, user_id: str) -> list[tuple[str, str, str]]:
    return [(r.key, r.path, r.source) for r in rows(
        world.db, "SELECT roles.key, units.path, grants.source FROM grants "
        "JOIN roles ON roles.id = grants.role_id JOIN units ON units.id = grants.unit_id "
        "WHERE grants.user_id = :u ORDER BY roles.key", u=user_id)]


def test_a_user_created_while_an_apply_is_open_waits_and_gets_the_new_rules(app, world):
    """POST /Users while a new rule set is applied but not committed: the create waits for
    the apply's commit, then evaluates under the new rules (before: 201 at once, with the
    replaced rule's grant, which the apply never corrected)."""
    world.user("first@acme.example", department="Sales")  # the apply has users to evaluate
    world.apply(OLD)
    body = user_body("sam@acme.example", **{ENTERPRISE: {"department": "Sales"}})
    with live_server(app) as url:
        with world.db.transaction() as s:
            apply_ruleset(s, s.get(Organization, world.org_id), parse_document(NEW),
                          OPERATOR, max_loss_share=1.0, force=True)
            create, outcome = started(
                world.db, lambda: http_call(url, world.tenant.token, "POST", "/Users", body))
            create.join(0.3)
            assert create.is_alive(), f"the create did not wait for the apply: {outcome}"
        create.join(30)
    status, created = outcome["result"]
    assert status == 201, created
    assert _grants(world, created["id"]) == UNDER_NEW


def test_an_apply_waits_for_an_open_user_create_and_evaluates_its_user(world):
    """A user created (not yet committed) when an apply starts: the apply waits for that
    commit, then its batches see the user and move it to the new rules (before: the apply
    committed without it and the user kept the old rule's grant)."""
    world.apply(OLD)
    created, release = threading.Event(), threading.Event()

    def create() -> str:
        with world.db.transaction() as s:
            directory = s.get(Directory, world.tenant.directory.id)
            user = create_user(s, directory, UserInput(
                {"user_name": "sam@acme.example", "department": "Sales"}), OPERATOR)
            created.set()
            release.wait(30)
            return user.id

    writer, written = background(create, start=True)
    try:
        assert created.wait(10), written
        applier, applied = started(world.db, lambda: world.apply(NEW))
        applier.join(0.3)
        assert applier.is_alive(), f"the apply did not wait for the open create: {applied}"
    finally:
        release.set()
    writer.join(30)
    applier.join(60)
    assert not isinstance(applied.get("result"), BaseException), applied
    assert _grants(world, written["result"]) == UNDER_NEW


def _lock_and_first_row_lock(world: World, client: Any, method: str, path: str,
                             body: dict[str, Any]) -> tuple[int, int]:
    """Where one SCIM write takes the mapping lock, and its first row lock or write after
    its directory's row (held FOR SHARE first of all: step 0 of the lock order, as in an
    SSO login; only an enable or disable of the directory conflicts with it)."""
    with _Statements(world.db.engine) as log:
        response = client.open(f"/scim/v2{path}", method=method, json=body,
                               content_type=SCIM, headers=world.tenant.headers)
        assert response.status_code in (200, 201, 204), response.get_json()
    statements = [sql for sql, _ in log.seen]
    mapping = [i for i, sql in enumerate(statements) if "advisory_xact_lock_shared" in sql]
    directory = [i for i, sql in enumerate(statements)
                 if "FROM directories" in sql and "FOR SHARE" in sql]
    assert directory, "the directory is not held"
    assert mapping, "no mapping lock taken"
    # One statement since 0023: the try is evaluated over a MATERIALIZED CTE that returns
    # the row once locked (app/directory/hold.py), so the directory is still held first.
    assert directory[0] < mapping[0] or (
        directory[0] == mapping[0] and "AS MATERIALIZED" in statements[mapping[0]]
        and statements[mapping[0]].index("FOR SHARE")
        < statements[mapping[0]].index("advisory_xact_lock_shared"))
    rows_ = [i for i, sql in enumerate(statements)
             if (sql.startswith(("INSERT", "UPDATE", "DELETE")) or " FOR " in sql)
             and i != directory[0]]
    assert mapping, "no mapping lock taken"
    assert rows_
    return mapping[0], rows_[0]


@pytest.mark.parametrize("write", ["create user", "put user", "patch user", "create group",
                                   "put group", "patch group"])
def test_scim_writes_take_the_mapping_lock_before_any_row_lock(client, world, write):
    """Every SCIM write holds the organization's mapping lock shared before its first row
    lock or write (the token's stamp, the group, the users): the lock order that keeps a
    write and an apply from deadlocking."""
    alice = world.user("alice@acme.example")
    group = world.group("Team-1", [alice])
    world.apply(OLD)
    rename = {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Team-2"}]}
    method, path, body = {
        "create user": ("POST", "/Users", user_body("bob@acme.example")),
        "put user": ("PUT", f"/Users/{alice}", user_body("alice@acme.example",
                                                          title="Boss")),
        "patch user": ("PATCH", f"/Users/{alice}", {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "path": "title", "value": "Boss"}]}),
        "create group": ("POST", "/Groups", {"schemas": [CORE_GROUP], "displayName": "G",
                                            "members": [{"value": alice}]}),
        "put group": ("PUT", f"/Groups/{group}", {"schemas": [CORE_GROUP],
                                                  "displayName": "Team-3", "members": []}),
        "patch group": ("PATCH", f"/Groups/{group}", rename),
    }[write]
    mapping, first_row_lock = _lock_and_first_row_lock(world, client, method, path, body)
    assert mapping < first_row_lock


def test_the_lock_is_per_organization(app, world, other_tenant):
    """An apply holds only its own organization's lock: another organization's SCIM create
    goes through while the apply is open."""
    world.apply(OLD)
    with live_server(app) as url, world.db.transaction() as s:
        apply_ruleset(s, s.get(Organization, world.org_id), parse_document(NEW),
                      OPERATOR, max_loss_share=1.0, force=True)
        create, outcome = background(lambda: http_call(
            url, other_tenant.token, "POST", "/Users", user_body("sam@globex.example")),
            start=True)
        create.join(10)
        assert not create.is_alive(), "another organization's create waited"
    assert outcome["result"][0] == 201, outcome


def test_an_operator_reactivation_takes_the_mapping_lock_before_the_user_row(client, world):
    """POST /api/v1/users/{id}/reactivate re-evaluates the user: it takes the mapping lock
    before it locks the user's row, as SCIM writes do."""
    alice = world.user("alice@acme.example", department="Sales")
    world.apply(OLD)
    with world.db.transaction() as s:
        deprovision_user(s, s.get(User, alice), OPERATOR, trigger=Trigger.operator)
    key = make_key(world.db, "operator")
    with _Statements(world.db.engine) as log:
        response = client.post(f"/api/v1/users/{alice}/reactivate", json={},
                               headers=key.headers)
        assert response.status_code == 200, response.get_json()
    statements = [sql for sql, _ in log.seen]
    mapping = [i for i, sql in enumerate(statements) if "advisory_xact_lock_shared" in sql]
    user_locks = [i for i, sql in enumerate(statements)
                  if "FROM users" in sql and sql.endswith("FOR NO KEY UPDATE")]
    assert mapping, "no mapping lock taken"
    assert user_locks
    assert mapping[0] < user_locks[0]
    assert _grants(world, alice) == [("buyer", "Engineering", "rule:old")]
