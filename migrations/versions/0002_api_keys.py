"""api keys and rate-limit counters.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('role', sa.Enum('operator', 'admin', 'auditor', 'portal', name='apirole', native_enum=False, length=20), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=True),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_api_keys_organization_id_organizations'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    op.create_index('ix_api_keys_organization_id_created_at', 'api_keys', ['organization_id', 'created_at'], unique=False)
    op.create_table('rate_limit_counters',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('count', sa.BigInteger(), nullable=False),
    sa.Column('expires_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_rate_limit_counters'))
    )
    op.create_index(op.f('ix_rate_limit_counters_expires_at'), 'rate_limit_counters', ['expires_at'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_rate_limit_counters_expires_at'), table_name='rate_limit_counters')
    op.drop_table('rate_limit_counters')
    op.drop_index('ix_api_keys_organization_id_created_at', table_name='api_keys')
    op.drop_table('api_keys')
