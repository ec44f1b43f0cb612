"""issue 4: the users' creation-order index covers live users only (a partial index).

A deep startIndex page (``OFFSET 50000``) walked (directory_id, created_at, id) and read
every skipped user's row to test ``deleted_at IS NULL``; with the condition in the index,
the skipped entries are passed over in the index alone. ``app.migrate.upgrade`` then writes
planner statistics for the new index on SQLite (``app.planner.seed_statistics``).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_LIVE = sa.text("deleted_at IS NULL")


def upgrade() -> None:
    """Replace ix_users_directory_created by its partial twin."""
    op.create_index("ix_users_directory_live_created", "users",
                    ["directory_id", "created_at", "id"],
                    sqlite_where=_LIVE, postgresql_where=_LIVE)
    op.drop_index("ix_users_directory_created", table_name="users")
    _forget_statistics("ix_users_directory_created")


def downgrade() -> None:
    """Back to the full index."""
    op.create_index("ix_users_directory_created", "users", ["directory_id", "created_at", "id"])
    op.drop_index("ix_users_directory_live_created", table_name="users")
    _forget_statistics("ix_users_directory_live_created")


def _forget_statistics(index: str) -> None:
    # SQLite keeps a dropped index's sqlite_stat1 row; it would describe nothing.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql(
            "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'").first():
        bind.execute(sa.text("DELETE FROM sqlite_stat1 WHERE idx = :i"), {"i": index})
