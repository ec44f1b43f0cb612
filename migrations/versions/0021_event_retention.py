"""Retention of the event tables, and indexes for the purges that keep tables bounded.

``outbox_events`` and ``webhook_deliveries`` grew forever. The retention purge
(app/events/retention.py, ``events.retention_days``) deletes old delivered deliveries and
old events nobody still needs, in short batches, and records each batch in
``outbox_purges`` (per cluster: the newest outbox id and txid it deleted, and its txids). Its id is the
purge epoch: a feed cursor carries the epoch it was issued at, and ``webhook_cursors``
gets ``purge_epoch``, so a reader behind a later purge is told (the feed's ``410
cursor_expired``; a held fan-out) instead of silently skipping what was purged.

Indexes, so no purge or hold reads a whole table: ``login_sessions.revoked_at`` and
``.expires_at`` and ``issued_tokens.expires_at`` (the SSO purge, app/sso/maintenance.py),
and ``oauth_authorization_codes.session_id`` (that purge's delete of a session cascades
there, which SQLite did by reading the whole table per session);
the delivered deliveries by (status, ``delivered_at``), and the dead letters by (endpoint,
aggregate, id), partial on ``status = 'dead'`` (the fan-out's dead-letter hold probes it
every page once a delivery is dead).

PostgreSQL: like the earlier migrations', each CREATE INDEX runs inside the migration's
transaction and takes a SHARE lock on its table: reads go on, writes to that table wait
while it builds (about a second per million rows), and the migration waits at most
``lock_timeout`` (10 s, migrations/env.py) for the lock before it gives up, changing
nothing. Run it with `roster worker` stopped, as 0020 asks.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import app.db

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

_DEAD = sa.text("status = 'dead'")
_BIGINT_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    """Create outbox_purges, webhook_cursors.purge_epoch and the purges' indexes."""
    op.create_table(
        "outbox_purges",
        sa.Column("id", _BIGINT_ID, autoincrement=True, nullable=False),
        sa.Column("cluster_id", sa.BigInteger(), nullable=True),
        sa.Column("max_id", sa.BigInteger(), nullable=False),
        sa.Column("max_txid", sa.BigInteger(), nullable=True),
        sa.Column("txids", _JSON, nullable=True),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("purged_at", app.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_purges")),
    )
    op.add_column("webhook_cursors", sa.Column("purge_epoch", sa.BigInteger(),
                                               server_default="0", nullable=False))
    op.create_index("ix_webhook_deliveries_dead", "webhook_deliveries",
                    ["endpoint", "aggregate_id", "id"],
                    sqlite_where=_DEAD, postgresql_where=_DEAD)
    op.create_index("ix_webhook_deliveries_status_delivered_at", "webhook_deliveries",
                    ["status", "delivered_at"])
    op.create_index("ix_login_sessions_revoked_at", "login_sessions", ["revoked_at"])
    op.create_index("ix_login_sessions_expires_at", "login_sessions", ["expires_at"])
    op.create_index("ix_issued_tokens_expires_at", "issued_tokens", ["expires_at"])
    op.create_index("ix_oauth_authorization_codes_session_id", "oauth_authorization_codes",
                    ["session_id"])


def downgrade() -> None:
    """Drop them (the purge watermarks go: cursors issued since then are plain again)."""
    for name, table in (("ix_oauth_authorization_codes_session_id", "oauth_authorization_codes"),
                        ("ix_issued_tokens_expires_at", "issued_tokens"),
                        ("ix_login_sessions_expires_at", "login_sessions"),
                        ("ix_login_sessions_revoked_at", "login_sessions"),
                        ("ix_webhook_deliveries_status_delivered_at", "webhook_deliveries"),
                        ("ix_webhook_deliveries_dead", "webhook_deliveries")):
        op.drop_index(name, table_name=table)
        _forget_statistics(name)
    with op.batch_alter_table("webhook_cursors") as batch:
        batch.drop_column("purge_epoch")
    op.drop_table("outbox_purges")


def _forget_statistics(index: str) -> None:
    # SQLite keeps a dropped index's sqlite_stat1 row; it would describe nothing.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql(
            "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'").first():
        bind.execute(sa.text("DELETE FROM sqlite_stat1 WHERE idx = :i"), {"i": index})
