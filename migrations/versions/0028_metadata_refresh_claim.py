"""A worker's claim on a due SAML metadata refresh.

`roster worker` re-reads URL-backed IdP metadata older than ``sso.metadata_refresh_hours``.
Several workers (one per node) each found the same connection due and each fetched and
wrote it, an ``sso:connection:metadata`` audit event apiece. ``sso_connections.
metadata_claimed_until`` holds one worker's claim, taken by a conditional UPDATE before the
fetch (app/sso/connections.py ``refresh_due``); the others skip the connection. Existing
rows get NULL: no claim.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add sso_connections.metadata_claimed_until (a plain ALTER TABLE on both databases)."""
    op.add_column("sso_connections", sa.Column("metadata_claimed_until",
                                               app.db.UTCDateTime(timezone=True),
                                               nullable=True))


def downgrade() -> None:
    """Drop it (workers no longer claim a refresh)."""
    op.drop_column("sso_connections", "metadata_claimed_until")
