"""deprovision_records.audit_id: each record's position in commit order, held by the record;
and, on PostgreSQL, a chain head row can no longer be deleted.

The record feed (``GET /api/v1/deprovisions``, app/audit/record_feed.py) pages records by
the id of the audit event naming each (``user:deprovision`` / ``user:deprovision_failed``,
``data.record_id``). It found that id by joining the organization's records to the audit
log by subject, so its first page read every record of the organization and every event
naming one (100,000 records: about 0.6 s, bench/README.md). Now the record holds the id
(``audit_id``, set by app/audit/log.py as the event is appended, in the record's own
transaction), indexed with its organization, and with itself (unique) for the feed across
organizations. The upgrade fills it in for the existing records: the id of the first event
naming each (its action, its user as subject, its organization and ``data.record_id``: the
join the feed ran); a record no event names keeps NULL and stays unlisted, as before.

PostgreSQL: ``audit_chain_heads`` rows refuse DELETE (a BEFORE DELETE row trigger running
0034's ``audit_log_guard()``, SQLSTATE 42501). Roster only inserts a head (an organization's
first event) and moves it at each append; a deleted head let the next append start the
chain again at seq 1 over the old records. As with 0034, a role that owns the tables can
still disable the trigger or bypass it (``session_replication_role = replica``).

The downgrade drops the trigger, the indexes and the column.

Revision ID: 0036
Revises: 0035
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0036"
down_revision = "0035"
branch_labels = None
depends_on = None

# PostgreSQL: one pass over the events naming records (their data is json, not jsonb).
BACKFILL_POSTGRESQL = """
UPDATE deprovision_records AS r SET audit_id = e.audit_id
FROM (SELECT min(id) AS audit_id, data->>'record_id' AS record_id, organization_id,
             subject_id
      FROM audit_events
      WHERE action IN ('user:deprovision', 'user:deprovision_failed') AND subject_type = 'user'
      GROUP BY data->>'record_id', organization_id, subject_id) AS e
WHERE e.record_id = r.id AND e.organization_id = r.organization_id
  AND e.subject_id = r.user_id
"""
# SQLite: per record, the events of its user (ix_audit_events_subject).
BACKFILL_SQLITE = """
UPDATE deprovision_records SET audit_id = (
    SELECT min(e.id) FROM audit_events AS e
    WHERE e.subject_type = 'user' AND e.subject_id = deprovision_records.user_id
      AND e.action IN ('user:deprovision', 'user:deprovision_failed')
      AND e.organization_id = deprovision_records.organization_id
      AND json_extract(e.data, '$.record_id') = deprovision_records.id)
"""
HEAD_TRIGGER = "audit_chain_heads_no_delete"


def upgrade() -> None:
    """Add, fill and index deprovision_records.audit_id; guard chain heads (PostgreSQL)."""
    bind = op.get_bind()
    op.add_column("deprovision_records", sa.Column("audit_id", sa.BigInteger(), nullable=True))
    op.execute(BACKFILL_POSTGRESQL if bind.dialect.name == "postgresql" else BACKFILL_SQLITE)
    op.create_index("ix_deprovision_records_organization_id_audit_id", "deprovision_records",
                    ["organization_id", "audit_id"], unique=False)
    op.create_index("uq_deprovision_records_audit_id", "deprovision_records", ["audit_id"],
                    unique=True)
    if bind.dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {HEAD_TRIGGER} BEFORE DELETE ON audit_chain_heads "
                   "FOR EACH ROW EXECUTE FUNCTION audit_log_guard()")


def downgrade() -> None:
    """Drop the trigger (PostgreSQL), the indexes and the column."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {HEAD_TRIGGER} ON audit_chain_heads")
    op.drop_index("uq_deprovision_records_audit_id", table_name="deprovision_records")
    op.drop_index("ix_deprovision_records_organization_id_audit_id",
                  table_name="deprovision_records")
    with op.batch_alter_table("deprovision_records", schema=None) as batch_op:
        batch_op.drop_column("audit_id")
