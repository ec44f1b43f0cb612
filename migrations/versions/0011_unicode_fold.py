"""issue 4: case-insensitive userName and displayName beyond ASCII on SQLite.

SQLite's ``lower()`` folds A-Z only. Roster now compares caseExact=false text through
``app.sql.fold``: ``roster_lower()`` on SQLite, a Unicode fold registered on every
connection (``app.engine.register_fold``). The unique indexes on ``lower(user_name)`` and
``lower(display_name)`` are rebuilt on ``roster_lower()``, so lookups use them again and
``ÖZIL@x.de`` and ``özil@x.de`` are one name. Until this runs, the new code still reads
correctly (without those indexes) and writes nothing the old indexes would compute
differently; ``app.migrate.upgrade`` then seeds planner statistics for the new indexes.

Names the old function kept apart and the new one joins (``ÖZIL@x.de`` and ``özil@x.de``
in one directory) would make the rebuild fail: ``app.fold_clashes`` releases deleted
users' names and stops the upgrade on two live holders, to be resolved in the IdP.
PostgreSQL folds with its own locale and needs nothing here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.engine import register_fold
from app.fold_clashes import free_folded_names
from app.folding import simple_lower

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Free the names deleted users hold twice, then rebuild both unique indexes."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    register_fold(bind.connection.dbapi_connection)
    free_folded_names(bind, "the case of non-ASCII letters, which SQLite compared "
                            "case-sensitively until now", simple_lower)
    _index_on("roster_lower")


def downgrade() -> None:
    """Back to SQLite's lower() (ASCII) indexes."""
    if op.get_bind().dialect.name == "sqlite":
        _index_on("lower")


def _index_on(function: str) -> None:
    for name, table, column in (("uq_users_directory_username", "users", "user_name"),
                                ("uq_groups_directory_display_name", "groups", "display_name")):
        op.drop_index(name, table_name=table)
        op.create_index(name, table, ["directory_id", sa.text(f"{function}({column})")],
                        unique=True)
