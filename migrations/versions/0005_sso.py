"""sso tables.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_sessions",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=True),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("expires_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=100), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name=op.f("fk_login_sessions_organization_id_organizations"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_login_sessions_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_sessions")),
    )
    op.create_index("ix_login_sessions_user_id", "login_sessions", ["user_id"])
    op.create_index(op.f("ix_login_sessions_organization_id"), "login_sessions",
                    ["organization_id"])
    op.create_table(
        "issued_tokens",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("organization_id", sa.String(length=36), nullable=True),
        sa.Column("user_id", sa.String(length=36), nullable=True),
        sa.Column("session_id", sa.String(length=36), nullable=True),
        sa.Column("directory_id", sa.String(length=36), nullable=True),
        sa.Column("client_id", sa.String(length=200), nullable=False),
        sa.Column("token_type", sa.String(length=20), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=1000), nullable=False),
        sa.Column("issued_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["organization_id"], ["organizations.id"],
                                name=op.f("fk_issued_tokens_organization_id_organizations"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_issued_tokens_user_id_users"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["session_id"], ["login_sessions.id"],
                                name=op.f("fk_issued_tokens_session_id_login_sessions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["directory_id"], ["directories.id"],
                                name=op.f("fk_issued_tokens_directory_id_directories"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_issued_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_issued_tokens_token_hash")),
    )
    op.create_index("ix_issued_tokens_user_id", "issued_tokens", ["user_id"])
    op.create_index("ix_issued_tokens_session_id", "issued_tokens", ["session_id"])
    op.create_index(op.f("ix_issued_tokens_directory_id"), "issued_tokens", ["directory_id"])


def downgrade() -> None:
    op.drop_table("issued_tokens")
    op.drop_table("login_sessions")
