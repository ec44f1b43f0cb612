"""issue 4 (found by an Okta replay): a manager reference naming no Roster user was 400.

Okta sends its profile's managerId as manager.value: the manager's Okta id, login or email,
never Roster's id, and often before the manager itself is pushed. Such a create failed
whole. users.manager_ref keeps a reference that names no user yet, and a partial index
on it, folded like userName (app.sql.fold), finds the users waiting for a manager when a
user is created or renamed.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.engine import register_fold

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add users.manager_ref and its partial index."""
    op.add_column("users", sa.Column("manager_ref", sa.String(500), nullable=True))
    bind = op.get_bind()
    function = "lower"
    if bind.dialect.name == "sqlite":
        register_fold(bind.connection.dbapi_connection)
        function = "roster_lower"
    op.create_index("ix_users_pending_manager", "users",
                    ["directory_id", sa.text(f"{function}(manager_ref)")],
                    sqlite_where=sa.text("manager_ref IS NOT NULL"),
                    postgresql_where=sa.text("manager_ref IS NOT NULL"))


def downgrade() -> None:
    """Drop the index and the column (pending references are forgotten)."""
    op.drop_index("ix_users_pending_manager", table_name="users")
    op.drop_column("users", "manager_ref")
