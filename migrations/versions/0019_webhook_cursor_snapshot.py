"""Webhook cursors on PostgreSQL move by snapshot, not by a time lag.

Fan-out moved an endpoint's cursor past every outbox event older than 60 seconds; an event
whose transaction committed later than that (a lock wait, a paused host) was never fanned
out to the webhooks, though the pull feed listed it. The cursor now moves to the newest id a
fan-out saw only once every transaction that could hold a lower id has ended: that id and
the xmax of the snapshot taken after it are kept until then (app/events/delivery.py).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add webhook_cursors.pending_outbox_id and pending_xmax (NULL: nothing pending)."""
    op.add_column("webhook_cursors",
                  sa.Column("pending_outbox_id", sa.BigInteger(), nullable=True))
    op.add_column("webhook_cursors", sa.Column("pending_xmax", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    """Drop the columns."""
    op.drop_column("webhook_cursors", "pending_xmax")
    op.drop_column("webhook_cursors", "pending_outbox_id")
