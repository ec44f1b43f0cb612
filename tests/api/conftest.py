"""API fixtures: keys of every role for the default tenant and for another tenant."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from sqlalchemy import update

from app.db import Database
from app.directory.apikeys import create_key
from app.models import Organization, Unit
from tests.conftest import OPERATOR, Tenant

ORG_ROLES = ("admin", "auditor", "portal")


@pytest.fixture(autouse=True)
def _unlink_units(request: pytest.FixtureRequest) -> Iterator[None]:
    """Detach child units after the test: SQLite applies RESTRICT row by row, so the shared
    table cleanup could not delete a parent listed before its child."""
    yield
    if "db" in request.fixturenames or "app" in request.fixturenames:
        with request.getfixturevalue("db").transaction() as session:
            session.execute(update(Unit).values(parent_id=None))


@dataclass(frozen=True)
class Key:
    """A plaintext API key and its id."""

    id: str
    role: str
    plaintext: str

    @property
    def headers(self) -> dict[str, str]:
        """Authorization header for /api/v1."""
        return {"Authorization": f"Bearer {self.plaintext}"}


def make_key(db: Database, role: str, org: Organization | None = None, **kwargs: object) -> Key:
    """Create one API key in its own transaction."""
    with db.transaction() as session:
        bound = session.get(Organization, org.id) if org is not None else None
        key, plaintext = create_key(session, role, bound, OPERATOR, **kwargs)
    return Key(key.id, role, plaintext)


@pytest.fixture
def keys(db: Database, tenant: Tenant) -> dict[str, Key]:
    """One key per role: the operator's, and the tenant's admin, auditor and portal keys."""
    out = {"operator": make_key(db, "operator")}
    out.update({role: make_key(db, role, tenant.org) for role in ORG_ROLES})
    return out


@pytest.fixture
def other_keys(db: Database, other_tenant: Tenant) -> dict[str, Key]:
    """The other tenant's admin, auditor and portal keys."""
    return {role: make_key(db, role, other_tenant.org) for role in ORG_ROLES}
