"""One unit of work is one transaction: a failure midway leaves no row behind."""

from __future__ import annotations

import pytest

from app.directory.organizations import create_organization
from app.errors import Conflict
from app.mapping.catalog import RoleSpec
from tests.conftest import CATALOG, OPERATOR, rows


def test_failure_midway_through_a_write_leaves_nothing(db):
    """Org, audit rows and the first roles are flushed, then a duplicate role fails: all gone."""
    catalog = [*CATALOG, RoleSpec(key="buyer", name="Buyer again")]
    with pytest.raises(Conflict), db.transaction() as session:
        create_organization(session, "acme", "Acme", catalog, OPERATOR)
    for table in ("organizations", "roles", "audit_events", "audit_chain_heads"):
        assert rows(db, f"SELECT count(*) FROM {table}")[0][0] == 0, table


def test_unexpected_exception_rolls_back(db):
    """Any exception inside the block rolls the whole unit back."""
    with pytest.raises(RuntimeError), db.transaction() as session:
        create_organization(session, "acme", "Acme", CATALOG, OPERATOR)
        session.flush()
        raise RuntimeError("boom")
    assert rows(db, "SELECT count(*) FROM organizations")[0][0] == 0


def test_successful_unit_commits_change_and_audit_together(db):
    """The change and its audit events are committed together."""
    with db.transaction() as session:
        create_organization(session, "acme", "Acme", CATALOG, OPERATOR)
    assert rows(db, "SELECT count(*) FROM organizations")[0][0] == 1
    actions = {r[0] for r in rows(db, "SELECT action FROM audit_events")}
    assert {"organization:create", "role:create"} <= actions
