"""A user's version moves when its effective access changes without a write to the user.

A user shows its grants (the read-only access extension, returned by default: organization,
unit, unit path, role), but a rule-set apply, a rule edit, a unit added that a rule now
grants in, or a group write re-evaluating it changes them without writing the user: its
version stayed, and a client's ``If-None-Match`` got a 304 with the old grants (RFC 7644
§3.14, RFC 9110 §8.8.3). ``users.access_version`` / ``access_at`` count, on the user's own
row, how often (and when last) its grants changed so; the evaluation bumps them for the
users whose grants it changed, whose rows it holds already (app/mapping/evaluation.py). A
user's version and lastModified are derived from them (app/directory/versions.py). Existing
rows get 0: every current ETag stays valid.

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add users.access_version / access_at (a plain ALTER TABLE on both databases)."""
    op.add_column("users", sa.Column("access_version", sa.Integer(), server_default="0",
                                     nullable=False))
    op.add_column("users", sa.Column("access_at", app.db.UTCDateTime(timezone=True),
                                     nullable=True))


def downgrade() -> None:
    """Drop them (a user's version no longer moves with its grants)."""
    op.drop_column("users", "access_at")
    op.drop_column("users", "access_version")
