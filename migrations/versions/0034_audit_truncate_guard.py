"""PostgreSQL: the audit log's tables refuse ``TRUNCATE``, and signed checkpoints are
append-only.

0004's row trigger refuses UPDATE and DELETE on ``audit_events``, but row triggers do not
fire on ``TRUNCATE``: one statement emptied the log, its chain heads and its checkpoints
(``roster audit verify`` then calls every organization BAD, but the records are gone). And
``audit_checkpoints`` had no trigger at all, though Roster only ever inserts a checkpoint
(app/audit/checkpoints.py; no retention, purge or organization removal touches it): a
checkpoint could be changed or deleted in place.

Now, on PostgreSQL, ``audit_log_guard()`` refuses, with SQLSTATE 42501
(insufficient_privilege) and the table and operation named:

- ``TRUNCATE`` of ``audit_events``, ``audit_chain_heads`` and ``audit_checkpoints``
  (statement-level BEFORE TRUNCATE triggers; they fire for tables a ``TRUNCATE ... CASCADE``
  of another table reaches too, e.g. ``organizations``);
- UPDATE and DELETE of ``audit_checkpoints`` rows (a row trigger, like 0004's).

Chain heads are still updated at every append (app/audit/log.py), so only their TRUNCATE is
refused. No code path of Roster deletes audit rows, so no path needs letting through. As
with 0004's trigger, whoever owns the tables can still disable the triggers (``ALTER TABLE
... DISABLE TRIGGER``) or bypass them (``session_replication_role = replica``, superuser);
the hash chain and exported checkpoints expose what such a role does. SQLite has no such
triggers: nothing changes there.

The downgrade drops the triggers and the function.

Revision ID: 0034
Revises: 0033
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op

revision = "0034"
down_revision = "0033"
branch_labels = None
depends_on = None

FUNCTION = "audit_log_guard"
GUARD_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'audit_chain_heads' THEN
        RAISE EXCEPTION 'audit_chain_heads belongs to the append-only audit log: % is not '
                        'allowed', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RAISE EXCEPTION '% is append-only: % is not allowed', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql
"""
# (name, table, timing and events, level) of every trigger this migration creates.
TRIGGERS = [
    ("audit_events_no_truncate", "audit_events", "BEFORE TRUNCATE", "STATEMENT"),
    ("audit_chain_heads_no_truncate", "audit_chain_heads", "BEFORE TRUNCATE", "STATEMENT"),
    ("audit_checkpoints_no_truncate", "audit_checkpoints", "BEFORE TRUNCATE", "STATEMENT"),
    ("audit_checkpoints_append_only", "audit_checkpoints", "BEFORE UPDATE OR DELETE", "ROW"),
]


def upgrade() -> None:
    """Create the guard function and its triggers (PostgreSQL only)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(GUARD_FUNCTION)
    for name, table, when, level in TRIGGERS:
        op.execute(f"CREATE TRIGGER {name} {when} ON {table} "
                   f"FOR EACH {level} EXECUTE FUNCTION {FUNCTION}()")


def downgrade() -> None:
    """Drop the triggers and the function (PostgreSQL only)."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for name, table, _when, _level in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
