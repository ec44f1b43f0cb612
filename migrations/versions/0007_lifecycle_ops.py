"""issue 7 follow-ups (lifecycle): reserved slot, no schema change yet.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """No schema change (yet)."""


def downgrade() -> None:
    """No schema change (yet)."""
