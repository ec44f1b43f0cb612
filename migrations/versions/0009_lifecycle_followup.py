"""issue 7 follow-up: the operator's reason on the deprovisioning record.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """deprovision_records.reason: why an operator (CLI or API) took the user out."""
    with op.batch_alter_table("deprovision_records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=500), nullable=True))


def downgrade() -> None:
    """Drop deprovision_records.reason."""
    with op.batch_alter_table("deprovision_records", schema=None) as batch_op:
        batch_op.drop_column("reason")
