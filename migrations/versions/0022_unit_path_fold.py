"""Unit paths are unique in any case, as the mapping matches them.

The mapping finds a unit by its path ignoring case (``Departments/sales`` is the unit
``Departments/Sales``), and a ``create_unit`` rule makes the unit it did not find; but
``uq_units_org_path`` compared paths exactly. Two SCIM creates at once whose departments were
``Dept`` and ``dept`` (PostgreSQL; SQLite has one writer) each found no unit and each made
one: two units the mapping could not tell apart, and an operator could add ``sales`` beside
``Sales`` too. The index is now on the folded path (``app.sql.fold``: ``lower()`` on
PostgreSQL, ``roster_lower()`` on SQLite), so the later insert waits for the first and is
refused, and the evaluation then uses the unit the first made.

Units whose paths already differ only in case stop the upgrade, named with their ids:
merging two units (their grants, children and the rules naming them) is not a migration's
call. Nothing changes until they are resolved by the operator.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from app.engine import register_fold
from app.errors import MigrationBlocked

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

_INDEX = "uq_units_org_path"


def _fold_function(bind: sa.Connection) -> str:
    if bind.dialect.name == "sqlite":
        register_fold(bind.connection.dbapi_connection)
        return "roster_lower"
    return "lower"


def _clashes(bind: sa.Connection, function: str) -> list[str]:
    """Each set of units of one organization whose paths the new index would join."""
    units = sa.table("units", sa.column("id"), sa.column("organization_id"),
                     sa.column("path"))
    folded = getattr(sa.func, function)(units.c.path)
    sets: dict[tuple[str, str], list[str]] = defaultdict(list)
    for org, key, path, unit_id in bind.execute(
            sa.select(units.c.organization_id, folded, units.c.path, units.c.id)
            .order_by(units.c.organization_id, units.c.path)):
        sets[(org, key)].append(f"{path!r} ({unit_id})")
    return [f"organization {org}: units " + ", ".join(found)
            for (org, _key), found in sets.items() if len(found) > 1]


def upgrade() -> None:
    """Stop on units a case fold would join; else rebuild the index on the folded path."""
    bind = op.get_bind()
    function = _fold_function(bind)
    clashes = _clashes(bind, function)
    if clashes:
        raise MigrationBlocked(
            "these unit paths differ only in case, which the mapping already treats as one "
            "unit; move the grants and child units of one of each onto the other and delete "
            "it (no command does this yet), then run `roster db upgrade` again:\n  "
            + "\n  ".join(clashes))
    op.drop_index(_INDEX, table_name="units")
    op.create_index(_INDEX, "units", ["organization_id", sa.text(f"{function}(path)")],
                    unique=True)


def downgrade() -> None:
    """Back to exact paths (every folded-unique set of paths is exactly unique too)."""
    op.drop_index(_INDEX, table_name="units")
    op.create_index(_INDEX, "units", ["organization_id", "path"], unique=True)
