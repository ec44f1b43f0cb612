"""Login traces lose the expiry column 0030 stopped using.

* ``sso_login_traces.expires_at``: since 0030 a trace is kept by its ``created_at`` under
  ``sso.trace_retention_days`` as it is now; ``expires_at`` was neither written nor read,
  kept nullable (without its index) only so that a node of the release before 0030 could
  still write a trace during that rolling deploy. That release is gone once every node
  runs 0030's, so the column is dropped.

Cost: on SQLite the table is rebuilt (copied) under the upgrade's write lock, about a
second per hundred thousand traces; on PostgreSQL dropping a column touches the catalogue
only (its space is reclaimed as rows are rewritten), under a brief ACCESS EXCLUSIVE lock on
``sso_login_traces``.

Deploy 0031 only after every node runs a release with 0030 (any release since): a node of
a release before 0030 writes ``expires_at`` and fails on a trace once it is gone.

The downgrade adds the column back nullable and empty, as 0030 left it (traces written
since keep none, and need none: 0030's release ages them by ``created_at``); a downgrade
below 0030 then gives every trace an expiry again (0030's downgrade).

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0031"
down_revision = "0030"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop ``sso_login_traces.expires_at``."""
    with op.batch_alter_table("sso_login_traces") as batch:
        batch.drop_column("expires_at")


def downgrade() -> None:
    """Add ``sso_login_traces.expires_at`` back, nullable and empty, as 0030 left it."""
    with op.batch_alter_table("sso_login_traces") as batch:
        batch.add_column(sa.Column("expires_at", app.db.UTCDateTime(timezone=True),
                                   nullable=True))
