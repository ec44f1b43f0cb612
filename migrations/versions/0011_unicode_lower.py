"""issue 4: case-insensitive userName and displayName beyond ASCII on SQLite.

Roster now registers a Unicode ``lower()`` on every SQLite connection
(``app.db.register_unicode_lower``); SQLite's own folds ASCII letters only. The unique
indexes on ``lower(user_name)`` and ``lower(display_name)`` hold entries the old function
computed, so they are rebuilt with the new one (REINDEX), or lookups of a non-ASCII name
would miss its row.

Names the old function kept apart and the new one joins (``ÖZIL@x.de`` and ``özil@x.de``
in one directory) would make the rebuild fail. A soft-deleted user gives its name up, as
Roster does when a new user takes a deleted user's name; two live holders stop the
upgrade with the list of them, to be resolved in the IdP (rename or delete one), since
choosing which of two provisioned users keeps its name is not a migration's call.
PostgreSQL folds with its own locale and needs nothing here.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from app.db import register_unicode_lower

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Free the names deleted users hold twice, then rebuild both unique indexes."""
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    register_unicode_lower(bind.connection.dbapi_connection)
    live = _release_deleted_holders(bind) + _group_clashes(bind)
    if live:
        raise RuntimeError(
            "these names differ only in the case of non-ASCII letters, which SQLite "
            "compared case-sensitively until now; rename or delete one of each in the IdP, "
            "then run `roster db upgrade` again:\n  " + "\n  ".join(live))
    op.execute("REINDEX uq_users_directory_username")
    op.execute("REINDEX uq_groups_directory_display_name")


def downgrade() -> None:
    """Nothing to undo: the index definitions did not change."""


def _release_deleted_holders(bind: sa.Connection) -> list[str]:
    rows = bind.execute(sa.text(
        "SELECT id, directory_id, user_name, deleted_at FROM users")).all()
    by_name: dict[tuple[str, str], list[sa.Row]] = defaultdict(list)
    for row in rows:
        by_name[(row.directory_id, row.user_name.lower())].append(row)
    clashes = []
    for (directory_id, _name), holders in by_name.items():
        if len(holders) < 2:
            continue
        deleted = [h for h in holders if h.deleted_at is not None]
        live = [h for h in holders if h.deleted_at is None]
        # All but one give the name up: the deleted ones first, the live one keeps it.
        for holder in deleted[: len(holders) - 1]:
            bind.execute(sa.text("UPDATE users SET user_name = :n WHERE id = :i"),
                         {"n": f"{holder.id}.deleted", "i": holder.id})
        if len(live) > 1:
            clashes.append(f"directory {directory_id}: users "
                           + ", ".join(f"{h.user_name!r} ({h.id})" for h in live))
    return clashes


def _group_clashes(bind: sa.Connection) -> list[str]:
    rows = bind.execute(sa.text("SELECT id, directory_id, display_name FROM groups")).all()
    by_name: dict[tuple[str, str], list[sa.Row]] = defaultdict(list)
    for row in rows:
        by_name[(row.directory_id, row.display_name.lower())].append(row)
    return [f"directory {directory_id}: groups "
            + ", ".join(f"{h.display_name!r} ({h.id})" for h in holders)
            for (directory_id, _name), holders in by_name.items() if len(holders) > 1]
