"""Versions that move when a user's SCIM delete or restore changes what others show.

A SCIM-deleted user vanishes from its groups' ``members`` and its reports' ``manager``
(its rows stay for a restore), but neither the group nor the report is written: the
delete holds the user's row, and locking a group or another user after it would break the
lock order (app/mapping/reevaluation.py). Their versions were left as they were, so a
client's ``If-None-Match`` got a 304 for a changed resource.

``group_member_versions`` counts, per group, the changes of its live members made without
a write to the group (one row per group that had one; a member's delete or restore moves
it at commit), and ``users.shown_version`` / ``shown_at`` what a report shows of its
manager (shown or not, and its display). A group's and a report's version and
lastModified are derived from these (app/scim/versions.py). No existing row changes:
every current ETag stays valid.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create group_member_versions and users.shown_version / shown_at."""
    op.create_table(
        "group_member_versions",
        sa.Column("group_id", sa.String(length=36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["groups.id"],
                                name=op.f("fk_group_member_versions_group_id_groups"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("group_id", name=op.f("pk_group_member_versions")),
    )
    # Plain ALTER TABLE on both databases (SQLite adds and, since 3.35, drops a column in
    # place): the users table and its folded-name indexes are not rebuilt.
    op.add_column("users", sa.Column("shown_version", sa.Integer(), server_default="0",
                                     nullable=False))
    op.add_column("users", sa.Column("shown_at", app.db.UTCDateTime(timezone=True),
                                     nullable=True))


def downgrade() -> None:
    """Drop them (versions are plain row versions again)."""
    op.drop_column("users", "shown_at")
    op.drop_column("users", "shown_version")
    op.drop_table("group_member_versions")
