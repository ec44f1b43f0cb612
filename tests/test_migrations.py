"""Migrations: empty -> head -> base on the test database, and models match migrations."""

from __future__ import annotations

import warnings

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from app.db import Base
from app.migrate import current_revision, downgrade, head_revision, upgrade


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()


def test_upgrade_to_head_then_downgrade_to_base(fresh_url):
    """Upgrading creates every model table; downgrading removes them all."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    assert current_revision(engine) == head_revision()
    engine.dispose()
    assert _tables(fresh_url) == set(Base.metadata.tables)
    downgrade(fresh_url, "base")
    assert _tables(fresh_url) == set()
    upgrade(fresh_url)
    assert _tables(fresh_url) == set(Base.metadata.tables)


def test_models_and_migrations_agree(database_url):
    """Autogenerate finds no difference between the migrated schema and the models."""
    engine = sa.create_engine(database_url)
    with engine.connect() as conn, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}),
                                Base.metadata)
    engine.dispose()
    # Expression indexes (lower(...)) cannot be reflected on SQLite; they are checked below.
    assert [d for d in diff if not _is_expression_index(d)] == []


def _is_expression_index(diff: object) -> bool:
    return isinstance(diff, tuple) and diff[0] in ("add_index", "remove_index") and \
        diff[1].name in ("uq_users_directory_username", "uq_groups_directory_display_name")


def test_case_insensitive_uniqueness_is_enforced_by_the_database(db, tenant):
    """Two users (or groups) whose names differ only in case cannot both be stored."""
    from app.models import Group, User

    for model, field in ((User, "user_name"), (Group, "display_name")):
        with pytest.raises(sa.exc.IntegrityError), db.transaction() as session:
            for value in ("Alice@Acme.com", "alice@acme.COM"):
                session.add(model(directory_id=tenant.directory.id,
                                  organization_id=tenant.org.id, **{field: value}))
                session.flush()
