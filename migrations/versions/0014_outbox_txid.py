"""issue 8 (found by a concurrency audit): the pull feed lost events on PostgreSQL.

The feed paged by the outbox id, which PostgreSQL's sequence hands out when a row is
inserted; rows become visible when their transaction commits, in another order. A poll
could return ids 11939-11944 while 11941's transaction was still running, and the next
poll, starting after 11944, never saw it. Each row now records the id of the transaction
that wrote it (``pg_current_xact_id()``, a server default, so the INSERT is unchanged),
and the feed's cursor holds a snapshot: a page lists the events of transactions that ended
between two snapshots (app/events/feed.py). Rows written before this upgrade get 0: ended
before any snapshot the feed takes. SQLite has one writer at a time, so its ids become
visible in order; the column stays NULL there and its index holds no entries.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_WRITTEN = sa.text("txid IS NOT NULL")


def upgrade() -> None:
    """Add outbox_events.txid (PostgreSQL: set by the server) and its partial index."""
    postgres = op.get_bind().dialect.name == "postgresql"
    # The constant first: existing rows get 0 without a rewrite; then the live default.
    op.add_column("outbox_events", sa.Column("txid", sa.BigInteger(), nullable=True,
                                             server_default="0" if postgres else None))
    if postgres:
        op.alter_column("outbox_events", "txid",
                        server_default=sa.text("(pg_current_xact_id()::text::bigint)"))
    op.create_index("ix_outbox_events_txid", "outbox_events", ["txid"],
                    sqlite_where=_WRITTEN, postgresql_where=_WRITTEN)


def downgrade() -> None:
    """Drop the column and its index."""
    op.drop_index("ix_outbox_events_txid", table_name="outbox_events")
    op.drop_column("outbox_events", "txid")
