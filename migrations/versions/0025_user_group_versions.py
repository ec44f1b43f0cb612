"""A user's version moves when its groups change without a write to the user.

A user shows its groups (the read-only ``groups``: value, display, $ref, RFC 7643 §4.1.2),
but a group write adding or removing it, renaming one of its groups or deleting one does
not write the user: its version stayed, and a client's ``If-None-Match`` got a 304 with the
old ``groups``. ``users.groups_version`` / ``groups_at`` count, on the user's own row, how
often (and when last) its groups changed so; a group write bumps them for the users it
changes, whose rows it locks already (app/mapping/reevaluation.py). A user's version and
lastModified are derived from them (app/directory/versions.py). Existing rows get 0: every
current ETag stays valid.

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add users.groups_version / groups_at (a plain ALTER TABLE on both databases)."""
    op.add_column("users", sa.Column("groups_version", sa.Integer(), server_default="0",
                                     nullable=False))
    op.add_column("users", sa.Column("groups_at", app.db.UTCDateTime(timezone=True),
                                     nullable=True))


def downgrade() -> None:
    """Drop them (a user's version no longer moves with its groups)."""
    op.drop_column("users", "groups_at")
    op.drop_column("users", "groups_version")
