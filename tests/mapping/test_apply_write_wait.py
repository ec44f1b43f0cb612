"""A write behind a long rule-set apply (PostgreSQL): bounded by ``[mapping] write_wait_ms``.

Before, a SCIM write (or an operator's reactivation, or a JIT login: see
tests/sso/test_jit_mapping_lock.py) of an organization whose rule set was being applied
waited for the apply's commit without limit: an apply of 10,000 users holds the
organization's mapping lock for 15-20 s, and every such write held a request thread
meanwhile. Now it waits at most the bound, then is answered 503 with Retry-After in its
blueprint's format, having written nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from app import create_app
from app.lifecycle import Trigger, deprovision_user
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Organization, User
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, app_overrides, rows
from tests.mapping.conftest import World
from tests.scim.support import ENTERPRISE, SCIM, user_body
from tests.threads import background

SALES = {"attribute": "department", "value": "Sales"}
OLD = {"policy": {"on_loss": "nothing"},
       "rules": [{"id": "old", "role": "buyer", "unit": "Engineering", "match": SALES}]}
NEW = {"policy": {"on_loss": "nothing"},
       "rules": [{"id": "new", "role": "technician", "unit": "Departments/Sales",
                  "match": SALES}]}
BOUND_MS = 500


@pytest.fixture(autouse=True)
def _postgresql_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no mapping lock to wait for")


@pytest.fixture
def impatient_app(database_url: str, app: Flask) -> Iterator[Flask]:
    """The app on the suite's database with ``[mapping] write_wait_ms`` = 500."""
    built = create_app({**app_overrides(database_url), "mapping": {"write_wait_ms": BOUND_MS}})
    yield built
    built.extensions["roster.db"].dispose()


def _behind_an_open_apply(world: World, call: Any, *, bound_ms: int) -> tuple[Any, float]:
    """Run ``call`` on a thread while a rule-set apply of the organization is open (not
    committed) for far longer than the bound; its result and how long it took. The call
    must end while the apply is still open."""
    with world.db.transaction() as s:
        apply_ruleset(s, s.get(Organization, world.org_id), parse_document(NEW), OPERATOR,
                      max_loss_share=1.0, force=True)
        began = time.monotonic()
        thread, outcome = background(call, start=True)
        thread.join(bound_ms / 1000 + 10)
        took = time.monotonic() - began
        assert not thread.is_alive(), "the write is still waiting for the apply"
    result = outcome["result"]
    assert not isinstance(result, BaseException), result
    return result, took


def test_a_scim_create_behind_a_long_apply_is_503_with_retry_after(impatient_app, world):
    """POST /Users while an apply stays open: 503 SCIM error with Retry-After once the
    bound has passed (not when the apply commits), and no user, audit or outbox row."""
    world.user("first@acme.example", department="Sales")
    world.apply(OLD)
    audit = rows(world.db, "SELECT count(*) FROM audit_events")[0][0]
    body = user_body("sam@acme.example", **{ENTERPRISE: {"department": "Sales"}})
    client = impatient_app.test_client()
    response, took = _behind_an_open_apply(world, lambda: client.post(
        "/scim/v2/Users", json=body, content_type=SCIM, headers=world.tenant.headers),
        bound_ms=BOUND_MS)
    assert response.status_code == 503, response.get_json()
    assert response.headers["Retry-After"] == "5"  # 3 x the 0.5 s bound, at least 5 s
    error = response.get_json()
    assert error["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert error["status"] == "503"
    assert BOUND_MS / 1000 * 0.9 <= took < BOUND_MS / 1000 + 5, took
    assert rows(world.db, "SELECT count(*) FROM users WHERE user_name = 'sam@acme.example'"
                )[0][0] == 0
    # The apply committed after the refusal: its own audit events only, none of the create.
    actions = {r.action for r in rows(world.db, "SELECT action FROM audit_events ORDER BY id"
                                      )[audit:]}
    assert "user:create" not in actions, actions
    # The same write once the apply is done: 201 under the new rules.
    again = client.post("/scim/v2/Users", json=body, content_type=SCIM,
                        headers=world.tenant.headers)
    assert again.status_code == 201, again.get_json()


def test_an_operator_reactivation_behind_a_long_apply_is_a_503_problem(impatient_app, world):
    """POST /api/v1/users/{id}/reactivate while an apply stays open: 503 problem JSON with
    Retry-After after the bound; the user stays deprovisioned."""
    user_id = world.user("ann@acme.example", department="Sales")
    world.apply(OLD)
    with world.db.transaction() as s:
        deprovision_user(s, s.get(User, user_id), OPERATOR, trigger=Trigger.operator)
    key = make_key(world.db, "operator")
    client = impatient_app.test_client()
    response, _took = _behind_an_open_apply(world, lambda: client.post(
        f"/api/v1/users/{user_id}/reactivate", headers=key.headers), bound_ms=BOUND_MS)
    assert response.status_code == 503, response.get_json()
    assert response.mimetype == "application/problem+json"
    assert response.headers["Retry-After"] == "5"  # 3 x the 0.5 s bound, at least 5 s
    assert rows(world.db, "SELECT status FROM users WHERE id = :u", u=user_id)[0][0] == \
        "deprovisioned"


def test_the_write_path_tries_the_mapping_lock_in_the_directory_holds_statement(app, world):
    """PostgreSQL: a SCIM write's first two locks (its directory's row FOR SHARE, the
    organization's mapping lock tried shared) are one statement, one round trip: the try is
    a column of the select that holds the row. Before, each was a statement of its own."""
    seen: list[str] = []

    def _capture(_conn, _cursor, statement, _parameters, _context, _many) -> None:
        seen.append(" ".join(statement.split()))

    body = user_body("rt@acme.example", **{ENTERPRISE: {"department": "Sales"}})
    client = app.test_client()
    sa.event.listen(world.db.engine, "before_cursor_execute", _capture)
    try:
        created = client.post("/scim/v2/Users", json=body, content_type=SCIM,
                              headers=world.tenant.headers)
    finally:
        sa.event.remove(world.db.engine, "before_cursor_execute", _capture)
    assert created.status_code == 201, created.get_json()
    tries = [s for s in seen if "pg_try_advisory_xact_lock_shared" in s]
    assert len(tries) == 1, tries
    assert "FROM directories" in tries[0]
    assert "FOR SHARE" in tries[0]
    print(f"POST /Users: {len(seen)} statements")  # the bench figure (-s)

