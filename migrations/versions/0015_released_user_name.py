"""issue 7 (found in session 15's review): a reactivated user came back as "<id>.deleted".

When a new user takes the userName of a soft-deleted user, the deleted one is renamed
"<id>.deleted" so that the unique index holds. An operator's reactivation (API, CLI, batch
restore) then brought the user back under that placeholder. The name given up is now kept
in users.released_user_name, and a reactivation takes it back while no live user holds it.
Users renamed before this upgrade get the userName of their latest deprovisioning record,
the name they had when they were taken out.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_BACKFILL = sa.text(
    "UPDATE users SET released_user_name = (SELECT r.user_name FROM deprovision_records r "
    "WHERE r.user_id = users.id ORDER BY r.received_at DESC LIMIT 1) "
    "WHERE deleted_at IS NOT NULL AND user_name = id || '.deleted'")


def upgrade() -> None:
    """Add users.released_user_name and fill it for users renamed before."""
    op.add_column("users", sa.Column("released_user_name", sa.String(500), nullable=True))
    op.execute(_BACKFILL)


def downgrade() -> None:
    """Drop the column (renamed users keep their placeholder)."""
    op.drop_column("users", "released_user_name")
