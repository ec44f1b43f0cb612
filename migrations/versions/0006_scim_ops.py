"""scim ops tables: flight recorder, dialect counters, OAuth clients of directories.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scim_requests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("directory_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("path", sa.String(length=1000), nullable=False),
        sa.Column("query", sa.Text(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("notes", app.db.JSONType, nullable=False),
        sa.Column("user_agent", sa.String(length=300), nullable=True),
        sa.Column("request_body", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["directory_id"], ["directories.id"],
                                name=op.f("fk_scim_requests_directory_id_directories"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scim_requests")),
    )
    op.create_index("ix_scim_requests_directory_id_id", "scim_requests", ["directory_id", "id"])
    op.create_index("ix_scim_requests_created_at", "scim_requests", ["created_at"])
    op.create_table(
        "scim_dialect_notes",
        sa.Column("directory_id", sa.String(length=36), nullable=False),
        sa.Column("note", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["directory_id"], ["directories.id"],
                                name=op.f("fk_scim_dialect_notes_directory_id_directories"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("directory_id", "note", name=op.f("pk_scim_dialect_notes")),
    )
    op.create_table(
        "scim_oauth_clients",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("directory_id", sa.String(length=36), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", app.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["directory_id"], ["directories.id"],
                                name=op.f("fk_scim_oauth_clients_directory_id_directories"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_scim_oauth_clients")),
    )
    op.create_index(op.f("ix_scim_oauth_clients_directory_id"), "scim_oauth_clients",
                    ["directory_id"])


def downgrade() -> None:
    op.drop_table("scim_oauth_clients")
    op.drop_table("scim_dialect_notes")
    op.drop_table("scim_requests")
