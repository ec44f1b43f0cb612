"""issue 4 (found by its differential tests): audit data as json, not jsonb, on PostgreSQL.

An audit record's hash covers its ``data`` as Roster serialised it. jsonb stores a number
as a decimal value and prints it without exponent: a float such as ``1e+17`` (or any float
of 1e16 or more, whose shortest form has an exponent) reads back as the integer
``100000000000000000``, and ``roster audit verify`` then reported that untouched record as
changed. json keeps the text as written. Existing rows are converted from jsonb's text (a
record that already held such a number stays unverifiable). SQLite stores JSON text and
needs nothing.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """jsonb -> json (the append-only trigger is a row trigger: ALTER does not fire it)."""
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("audit_events", "data", type_=sa.JSON(),
                        existing_type=postgresql.JSONB(astext_type=sa.Text()),
                        existing_nullable=False, postgresql_using="data::json")


def downgrade() -> None:
    """json -> jsonb."""
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column("audit_events", "data", type_=postgresql.JSONB(astext_type=sa.Text()),
                        existing_type=sa.JSON(), existing_nullable=False,
                        postgresql_using="data::jsonb")
