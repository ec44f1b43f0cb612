"""Concurrent edits of one organization's rule set (PostgreSQL): one after the other.

Two mapping PUTs adding the same rule id both read the stored rules before either
committed, both inserted the rule, and the later insert met
uq_mapping_rules_organization_id_key: a 500. Now an apply takes the organization's mapping
lock exclusively before it reads the stored rules (app/mapping/locks.py), and the one-rule
edits before they read the current set, so the later edit works on the earlier's result.
"""

from __future__ import annotations

from typing import Any

import pytest

from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Organization
from tests.api.conftest import make_key
from tests.conftest import OPERATOR, rows
from tests.lockwait import wait_for_a_row_lock_wait
from tests.mapping.conftest import World
from tests.threads import background

BASE = {"id": "base", "role": "buyer", "unit": "Engineering", "match": {"group": "A"}}
ADDED = {"id": "added", "role": "technician", "unit": "Engineering/Tokyo",
         "match": {"group": "B"}}


@pytest.fixture(autouse=True)
def _postgresql_only(dialect: str) -> None:
    if dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: two edits never overlap")


def _while_open(world: World, document: dict[str, Any], call: Any) -> Any:
    """``call()`` on a thread while a transaction that applied ``document`` is still open;
    its result once that transaction has committed."""
    thread, outcome = background(call)
    with world.db.transaction() as s:
        apply_ruleset(s, s.get(Organization, world.org_id), parse_document(document),
                      OPERATOR, max_loss_share=1.0, force=True)
        thread.start()
        wait_for_a_row_lock_wait(world.db)
    thread.join(30)
    return outcome["result"]


def _stored(world: World) -> list[tuple[str, str]]:
    return [(r.key, r.role_key) for r in rows(
        world.db, "SELECT key, role_key FROM mapping_rules ORDER BY key")]


def test_two_mapping_puts_adding_the_same_rule(client, world):
    """PUT /mapping adding rule `added` while another apply adding it is uncommitted: the
    later waits, then updates the rule the earlier stored (before: a 500)."""
    world.apply({"rules": [BASE]})
    key = make_key(world.db, "admin", world.tenant.org)
    later = {**ADDED, "role": "approver"}
    response = _while_open(world, {"rules": [BASE, ADDED]}, lambda: client.put(
        f"/api/v1/orgs/{world.org_id}/mapping?force=true", headers=key.headers,
        json={"rules": [BASE, later]}))
    assert response.status_code == 200, response.get_json()
    assert _stored(world) == [("added", "approver"), ("base", "buyer")]


def test_adding_a_rule_another_edit_is_adding_is_a_409(client, world):
    """POST /mapping/rules with the id another uncommitted apply is adding: the edit reads
    the rule set after that commit and answers 409 (before: a 500)."""
    world.apply({"rules": [BASE]})
    key = make_key(world.db, "admin", world.tenant.org)
    response = _while_open(world, {"rules": [BASE, ADDED]}, lambda: client.post(
        f"/api/v1/orgs/{world.org_id}/mapping/rules?force=true", headers=key.headers,
        json={"rule": {**ADDED, "role": "approver"}}))
    assert response.status_code == 409, response.get_json()
    assert "already exists" in response.get_json()["detail"]
    assert _stored(world) == [("added", "technician"), ("base", "buyer")]
