"""issue 8 follow-ups (sso): reserved slot, no schema change yet.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """No schema change (yet)."""


def downgrade() -> None:
    """No schema change (yet)."""
