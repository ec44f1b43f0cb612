"""Login sessions record when the IdP authenticated the employee, not only when Roster
signed them in.

The OpenID Provider compared ``prompt=login`` and ``max_age`` (OIDC Core §3.1.2.1) with the
time of Roster's own login; an IdP that signed the employee in silently from its own old
session (a browser that dropped ``reauth=1``) gave a fresh-looking login. The SAML
assertion's ``AuthnInstant`` (SAML Core §2.7.2) or the upstream ID token's ``auth_time`` is
now kept, and the portal's ``auth_time`` is that instant.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add login_sessions.authenticated_at (NULL for older logins: their created_at)."""
    op.add_column("login_sessions",
                  sa.Column("authenticated_at", app.db.UTCDateTime(timezone=True),
                            nullable=True))


def downgrade() -> None:
    """Drop the column."""
    op.drop_column("login_sessions", "authenticated_at")
