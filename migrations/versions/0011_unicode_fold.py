"""issue 4: case-insensitive userName and displayName beyond ASCII on SQLite.

SQLite's ``lower()`` folds A-Z only. Roster now compares caseExact=false text through
``app.sql.fold``: ``roster_lower()`` on SQLite, a Unicode fold registered on every
connection (``app.db.register_fold``). The unique indexes on ``lower(user_name)`` and
``lower(display_name)`` are rebuilt on ``roster_lower()``, so lookups use them again and
``ÖZIL@x.de`` and ``özil@x.de`` are one name. Until this runs, the new code still reads
correctly (without those indexes) and writes nothing the old indexes would compute
differently; ``app.migrate.upgrade`` then seeds planner statistics for the new indexes.

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

from app.db import register_fold
from app.errors import MigrationBlocked

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
    live = _release_deleted_holders(bind) + _group_clashes(bind)
    if live:
        raise MigrationBlocked(
            "these names differ only in the case of non-ASCII letters, which SQLite "
            "compared case-sensitively until now; rename or delete one of each in the IdP, "
            "then run `roster db upgrade` again:\n  " + "\n  ".join(live))
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


def _release_deleted_holders(bind: sa.Connection) -> list[str]:
    clashes = []
    for directory_id, holders in _holders(bind, "SELECT id, directory_id, user_name AS name, "
                                                "deleted_at FROM users"):
        deleted = [h for h in holders if h.deleted_at is not None]
        live = [h for h in holders if h.deleted_at is None]
        # All but one give the name up: the deleted ones first, the live one keeps it.
        for holder in deleted[: len(holders) - 1]:
            bind.execute(sa.text("UPDATE users SET user_name = :n WHERE id = :i"),
                         {"n": f"{holder.id}.deleted", "i": holder.id})
        if len(live) > 1:
            clashes.append(f"directory {directory_id}: users "
                           + ", ".join(f"{h.name!r} ({h.id})" for h in live))
    return clashes


def _group_clashes(bind: sa.Connection) -> list[str]:
    return [f"directory {directory_id}: groups "
            + ", ".join(f"{h.name!r} ({h.id})" for h in holders)
            for directory_id, holders in _holders(
                bind, "SELECT id, directory_id, display_name AS name FROM groups")]


def _holders(bind: sa.Connection, query: str) -> list[tuple[str, list[sa.Row]]]:
    """(directory id, rows) for each name that two or more rows of a directory share once
    folded with str.lower (the rows' ``name`` column)."""
    by_name: dict[tuple[str, str], list[sa.Row]] = defaultdict(list)
    for row in bind.execute(sa.text(query)):
        by_name[(row.directory_id, row.name.lower())].append(row)
    return [(directory_id, rows) for (directory_id, _name), rows in by_name.items()
            if len(rows) > 1]
