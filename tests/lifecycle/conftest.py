"""Fixtures for lifecycle tests: a user with a manager, grants, sessions and tokens."""

from __future__ import annotations

import pytest

from app.db import Database
from tests.conftest import Tenant
from tests.lifecycle.support import Leaver, make_leaver


@pytest.fixture
def leaver(db: Database, tenant: Tenant) -> Leaver:
    """One fully equipped user of the default tenant."""
    return make_leaver(db, tenant)
