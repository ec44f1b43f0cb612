"""Login secrets sealed at rest.

* ``oidc_login_requests.code_verifier`` holds the PKCE verifier sealed (Fernet under a key
  derived from ``app.secret_key``, app/sso/sealed.py) instead of in clear: the column is
  widened for the token, and the verifiers of attempts in flight, stored in clear, are
  cleared (such a login ends with ``missing_pkce_verifier``; the user signs in again).
* ``login_sessions.upstream_id_token``: the customer IdP's ID token of an OIDC login,
  sealed, kept for the logout at the IdP (it was in the browser's signed cookie).

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Clear the clear verifiers, widen their column, add the sealed upstream ID token."""
    op.execute("UPDATE oidc_login_requests SET code_verifier = NULL")
    if op.get_bind().dialect.name == "postgresql":  # SQLite does not enforce the length
        op.alter_column("oidc_login_requests", "code_verifier", type_=sa.String(255),
                        existing_nullable=True)
    op.add_column("login_sessions", sa.Column("upstream_id_token", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop the sealed ID tokens (a logout then goes to the IdP without id_token_hint) and
    the sealed verifiers (attempts in flight end with ``missing_pkce_verifier``)."""
    op.drop_column("login_sessions", "upstream_id_token")
    op.execute("UPDATE oidc_login_requests SET code_verifier = NULL")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("oidc_login_requests", "code_verifier", type_=sa.String(128),
                        existing_nullable=True)
