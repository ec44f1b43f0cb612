"""lifecycle tables: deprovisioning records and batches, audit checkpoints, webhook
deliveries; on PostgreSQL a trigger that rejects UPDATE and DELETE on audit_events.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Row triggers do not fire on TRUNCATE (tests clean tables with it); an attacker with
# table-owner rights can still disable the trigger, which the hash chain then exposes.
APPEND_ONLY_FUNCTION = """
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""
APPEND_ONLY_TRIGGER = """
CREATE TRIGGER audit_events_append_only
BEFORE UPDATE OR DELETE ON audit_events
FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
"""


def upgrade() -> None:
    op.create_table('audit_checkpoints',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('chain', sa.String(length=36), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('key_id', sa.String(length=64), nullable=False),
    sa.Column('signature', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoints'))
    )
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.create_index('ix_audit_checkpoints_chain_seq', ['chain', 'seq'], unique=False)

    op.create_table('webhook_cursors',
    sa.Column('endpoint', sa.String(length=1000), nullable=False),
    sa.Column('last_outbox_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('endpoint', name=op.f('pk_webhook_cursors'))
    )
    op.create_table('deprovision_batches',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=False),
    sa.Column('directory_id', sa.String(length=36), nullable=True),
    sa.Column('opened_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('directory_users', sa.Integer(), nullable=False),
    sa.Column('restored_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('restored_by', sa.String(length=100), nullable=True),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_deprovision_batches_organization_id_organizations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deprovision_batches'))
    )
    with op.batch_alter_table('deprovision_batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deprovision_batches_directory_id'), ['directory_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_deprovision_batches_organization_id'), ['organization_id'], unique=False)

    op.create_table('deprovision_records',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('organization_id', sa.String(length=36), nullable=False),
    sa.Column('user_id', sa.String(length=36), nullable=False),
    sa.Column('scim_id', sa.String(length=36), nullable=False),
    sa.Column('external_id', sa.String(length=500), nullable=True),
    sa.Column('user_name', sa.String(length=500), nullable=False),
    sa.Column('directory_id', sa.String(length=36), nullable=True),
    sa.Column('vendor', sa.String(length=20), nullable=True),
    sa.Column('dialect', sa.String(length=100), nullable=True),
    sa.Column('trigger', sa.String(length=40), nullable=False),
    sa.Column('actor_type', sa.String(length=30), nullable=False),
    sa.Column('actor_id', sa.String(length=100), nullable=True),
    sa.Column('request_id', sa.String(length=100), nullable=True),
    sa.Column('source_ip', sa.String(length=100), nullable=True),
    sa.Column('user_agent', sa.String(length=500), nullable=True),
    sa.Column('received_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('applied_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revocation_committed_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('latency_ms', sa.Float(), nullable=True),
    sa.Column('state_before', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state_after', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('sessions_revoked', sa.Integer(), nullable=False),
    sa.Column('tokens_revoked', sa.Integer(), nullable=False),
    sa.Column('grants_removed', sa.Integer(), nullable=False),
    sa.Column('outcome', sa.String(length=20), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('batch_id', sa.String(length=36), nullable=True),
    sa.Column('restored_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['batch_id'], ['deprovision_batches.id'], name=op.f('fk_deprovision_records_batch_id_deprovision_batches'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['organization_id'], ['organizations.id'], name=op.f('fk_deprovision_records_organization_id_organizations'), ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_deprovision_records')),
    sa.UniqueConstraint('event_id', name=op.f('uq_deprovision_records_event_id'))
    )
    with op.batch_alter_table('deprovision_records', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_deprovision_records_batch_id'), ['batch_id'], unique=False)
        batch_op.create_index('ix_deprovision_records_directory_id_received_at', ['directory_id', 'received_at'], unique=False)
        batch_op.create_index('ix_deprovision_records_organization_id_received_at', ['organization_id', 'received_at'], unique=False)
        batch_op.create_index('ix_deprovision_records_user_id', ['user_id'], unique=False)

    op.create_table('webhook_deliveries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('outbox_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.String(length=36), nullable=False),
    sa.Column('endpoint', sa.String(length=1000), nullable=False),
    sa.Column('aggregate_id', sa.String(length=36), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('next_attempt_at', app.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('leased_until', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('leased_by', sa.String(length=100), nullable=True),
    sa.Column('last_status', sa.Integer(), nullable=True),
    sa.Column('last_error', sa.String(length=1000), nullable=True),
    sa.Column('delivered_at', app.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['outbox_id'], ['outbox_events.id'], name=op.f('fk_webhook_deliveries_outbox_id_outbox_events'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_deliveries')),
    sa.UniqueConstraint('outbox_id', 'endpoint', name=op.f('uq_webhook_deliveries_outbox_id_endpoint'))
    )
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_deliveries_endpoint_aggregate_id_id', ['endpoint', 'aggregate_id', 'id'], unique=False)
        batch_op.create_index('ix_webhook_deliveries_status_next_attempt_at', ['status', 'next_attempt_at'], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute(APPEND_ONLY_FUNCTION)
        op.execute(APPEND_ONLY_TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events")
        op.execute("DROP FUNCTION IF EXISTS audit_events_append_only()")
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_status_next_attempt_at')
        batch_op.drop_index('ix_webhook_deliveries_endpoint_aggregate_id_id')

    op.drop_table('webhook_deliveries')
    with op.batch_alter_table('deprovision_records', schema=None) as batch_op:
        batch_op.drop_index('ix_deprovision_records_user_id')
        batch_op.drop_index('ix_deprovision_records_organization_id_received_at')
        batch_op.drop_index('ix_deprovision_records_directory_id_received_at')
        batch_op.drop_index(batch_op.f('ix_deprovision_records_batch_id'))

    op.drop_table('deprovision_records')
    with op.batch_alter_table('deprovision_batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_deprovision_batches_organization_id'))
        batch_op.drop_index(batch_op.f('ix_deprovision_batches_directory_id'))

    op.drop_table('deprovision_batches')
    op.drop_table('webhook_cursors')
    with op.batch_alter_table('audit_checkpoints', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_checkpoints_chain_seq')

    op.drop_table('audit_checkpoints')
