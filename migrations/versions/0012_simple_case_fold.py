"""issue 4: SQLite folds names as PostgreSQL does (Unicode's simple lower-case mapping).

``roster_lower()`` was Python's ``str.lower``, Unicode's full mapping, while PostgreSQL's
``lower()`` (a UTF-8 locale) maps letter by letter. They differ for two letters: ``İ``
(U+0130) became ``i`` plus U+0307 and a word-final ``Σ`` became U+03C2; PostgreSQL gives
``i`` and U+03C3. So ``İpek`` and ``ipek`` were one userName on PostgreSQL and two on
SQLite, and a filter ``userName eq "ipek"`` found ``İpek`` on one database only (found by
tests/scim/test_filter_differential.py). ``app.sql.fold_text`` is now the simple mapping
on both sides. The unique indexes on ``roster_lower()`` hold keys computed with the old
function: they are rebuilt (REINDEX), after ``app.fold_clashes`` released deleted users'
names the new fold joins, or stopped the upgrade on live ones (nothing changes).
PostgreSQL needs nothing.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

from app.engine import register_fold
from app.fold_clashes import free_folded_names
from app.folding import simple_lower

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_INDEXES = ("uq_users_directory_username", "uq_groups_directory_display_name")


def upgrade() -> None:
    """Free the names the simple mapping joins, then rebuild both indexes with it."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    register_fold(bind.connection.dbapi_connection)
    free_folded_names(bind, "'İ' and 'i', or a final capital and small sigma, which "
                            "SQLite compared apart until now", simple_lower)
    for index in _INDEXES:
        op.execute(f"REINDEX {index}")


def downgrade() -> None:
    """Rebuild the indexes with the fold of the code that runs the downgrade."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        register_fold(bind.connection.dbapi_connection)
        for index in _INDEXES:
            op.execute(f"REINDEX {index}")
