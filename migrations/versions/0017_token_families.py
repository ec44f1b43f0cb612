"""OpenID Provider: a reused authorization code or a replayed refresh token revokes its grant.

A redeemed code was deleted, so its second use looked like an unknown code and the tokens
issued from it stayed live (RFC 6749 §4.1.2 says revoke them). The code row now stays,
marked ``used_at``, until it expires. Every token carries ``family_id`` (the SHA-256 of the
code it descends from, kept across refreshes) and a rotated refresh token ``rotated_at``, so
presenting it again revokes the whole family (RFC 9700 §4.14.2).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-12
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add oauth_authorization_codes.used_at, issued_tokens.family_id (indexed), rotated_at."""
    op.add_column("oauth_authorization_codes",
                  sa.Column("used_at", app.db.UTCDateTime(timezone=True), nullable=True))
    op.add_column("issued_tokens", sa.Column("family_id", sa.String(64), nullable=True))
    op.add_column("issued_tokens",
                  sa.Column("rotated_at", app.db.UTCDateTime(timezone=True), nullable=True))
    op.create_index("ix_issued_tokens_family_id", "issued_tokens", ["family_id"])


def downgrade() -> None:
    """Drop the index and the columns (used codes left behind simply expire)."""
    op.drop_index("ix_issued_tokens_family_id", table_name="issued_tokens")
    op.drop_column("issued_tokens", "rotated_at")
    op.drop_column("issued_tokens", "family_id")
    op.drop_column("oauth_authorization_codes", "used_at")
