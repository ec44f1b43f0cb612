"""oauth_authorization_codes: an index on (client_id, nonce) for the nonce-reuse check.

The OIDC provider refuses an authorization request whose nonce a stored code of the same
client already carries (OIDC Core 1.0 §3.1.2.1, §15.5.2; authlib's ``exists_nonce``,
app/sso/provider.py: ``WHERE nonce = ? AND client_id = ?``). No index covered either
column, so each authorization request read the whole codes table (unexpired and redeemed
codes are kept until the SSO purge deletes them). The index holds the two columns the check
compares, the client first (the same nonce under another client is not a reuse).

The downgrade drops the index.

Revision ID: 0037
Revises: 0036
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0037"
down_revision = "0036"
branch_labels = None
depends_on = None

INDEX = "ix_oauth_authorization_codes_client_id_nonce"


def upgrade() -> None:
    """Index the codes by client and nonce."""
    op.create_index(INDEX, "oauth_authorization_codes", ["client_id", "nonce"], unique=False)


def downgrade() -> None:
    """Drop the index."""
    op.drop_index(INDEX, table_name="oauth_authorization_codes")
