"""Fixtures for mapping tests: a tenant with units, and users and groups made from models."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import func, select

from app.db import Database
from app.directory.organizations import add_unit
from app.mapping.preview import apply_ruleset
from app.mapping.ruleset import parse_document
from app.models import Group, Membership, Organization, Unit, User
from tests.conftest import OPERATOR, Tenant

UNITS = [("Engineering", None), ("Tokyo", "Engineering"), ("Departments", None),
         ("Sales", "Departments")]


@dataclass
class World:
    """A tenant with a unit tree, and helpers to add users, groups and rules."""

    db: Database
    tenant: Tenant

    @property
    def org_id(self) -> str:
        """The organization id."""
        return self.tenant.org.id

    def user(self, name: str, **attrs: object) -> str:
        """Create a user of the tenant's directory; returns its id."""
        with self.db.transaction() as s:
            user = User(directory_id=self.tenant.directory.id, organization_id=self.org_id,
                        user_name=name, **attrs)
            s.add(user)
            s.flush()
            return user.id

    def group(self, name: str, members: list[str] = (), external_id: str | None = None) -> str:
        """Create a group with members; returns its id."""
        with self.db.transaction() as s:
            group = Group(directory_id=self.tenant.directory.id, organization_id=self.org_id,
                          display_name=name, external_id=external_id)
            s.add(group)
            s.flush()
            s.add_all(Membership(group_id=group.id, user_id=m) for m in members)
            return group.id

    def apply(self, document: dict, *, force: bool = True, share: float = 0.2):
        """Store a rule set and re-evaluate the organization (one transaction)."""
        with self.db.transaction() as s:
            org = s.get(Organization, self.org_id)
            return apply_ruleset(s, org, parse_document(document), OPERATOR,
                                 max_loss_share=share, force=force)


@pytest.fixture
def world(db: Database, tenant: Tenant) -> Iterator[World]:
    """The acme tenant with Engineering/Tokyo and Departments/Sales."""
    with db.transaction() as s:
        org = s.get(Organization, tenant.org.id)
        for name, parent in UNITS:
            add_unit(s, org, name, "department", parent, OPERATOR)
    yield World(db, tenant)
    # Children before parents: units.parent_id is ON DELETE RESTRICT, and SQLite checks it
    # row by row, so the suite's table-wide DELETE fails on a nested tree.
    with db.transaction() as s:
        for unit in s.scalars(select(Unit).order_by(func.length(Unit.path).desc())):
            s.delete(unit)
            s.flush()
