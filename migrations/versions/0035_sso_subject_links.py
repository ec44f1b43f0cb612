"""SSO subject pinning: ``sso_subject_links`` ties a connection's stable IdP subject to the
user it signed in.

One row per (connection, subject) and per (connection, user): the OIDC ``sub`` (OIDC Core
§2: never reassigned by its issuer) or a persistent SAML NameID (SAML Core §8.3.7) that
signed a user in through a connection, so that the IdP account whose email is changed to a
colleague's is refused (``subject_mismatch``) instead of signing in as that colleague
(app/sso/subject_links.py). Email, unspecified and transient NameIDs are not pinned.

Both foreign keys are ``ON DELETE CASCADE``: a link goes with its connection or its user.
SQLite enforces them because Roster turns ``PRAGMA foreign_keys`` on for every connection
(app/engine.py); a new table needs no batch mode (that is for altering existing tables on
SQLite). The table starts empty: every user is pinned at its next login.

The downgrade drops the table (the pins are lost; logins go on unpinned, as before 0035).

Revision ID: 0035
Revises: 0034
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0035"
down_revision = "0034"
branch_labels = None
depends_on = None

TABLE = "sso_subject_links"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("connection_id", sa.String(length=36), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("created_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_login_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["connection_id"], ["sso_connections.id"],
                                name=op.f("fk_sso_subject_links_connection_id_sso_connections"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_sso_subject_links_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sso_subject_links")),
        sa.UniqueConstraint("connection_id", "subject",
                            name=op.f("uq_sso_subject_links_connection_id_subject")),
        sa.UniqueConstraint("connection_id", "user_id",
                            name=op.f("uq_sso_subject_links_connection_id_user_id")),
    )
    op.create_index("ix_sso_subject_links_user_id", TABLE, ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_sso_subject_links_user_id", table_name=TABLE)
    op.drop_table(TABLE)
