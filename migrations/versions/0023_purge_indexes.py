"""Indexes for the SSO purge's deletes by age, and pruning of the outbox purge marks.

The periodic SSO purge (app/sso/maintenance.py) deletes expired authorization codes and
AuthnRequests and old back-channel logouts by ``expires_at`` / ``created_at``, which no
index covered: every run (every 10 minutes) read the three tables whole, and each grows with
every login. ``outbox_purges`` (0021) grew by a row per purge batch for good: its old rows
are now pruned, and the oldest row kept records the newest epoch pruned
(``pruned_through``), so a cursor from before it is expired instead of read on unchecked
(app/events/watermark.py prune_purges).

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_oauth_authorization_codes_expires_at", "oauth_authorization_codes", "expires_at"),
    ("ix_saml_requests_expires_at", "saml_requests", "expires_at"),
    ("ix_oidc_backchannel_logouts_created_at", "oidc_backchannel_logouts", "created_at"),
)


def upgrade() -> None:
    """Create the three indexes and outbox_purges.pruned_through."""
    for name, table, column in _INDEXES:
        op.create_index(name, table, [column])
    op.add_column("outbox_purges", sa.Column("pruned_through", sa.BigInteger(), nullable=True))


_NEWEST = 2**63 - 1


def downgrade() -> None:
    """Drop them. Marks pruned stay pruned; so that 0022's check, which has no floor, still
    expires a cursor from before them, a mark that no position has passed (the largest id
    and txid) takes the id of the newest one pruned: a cursor of an older epoch is checked
    against it, a later one is not."""
    bind = op.get_bind()
    floor = bind.execute(sa.text(
        "SELECT pruned_through FROM outbox_purges ORDER BY id LIMIT 1")).scalar()
    if floor:
        bind.execute(sa.text(
            "INSERT INTO outbox_purges (id, cluster_id, max_id, max_txid, txids, events, "
            "purged_at) VALUES (:id, NULL, :n, :n, NULL, 0, "
            "(SELECT min(purged_at) FROM outbox_purges))"), {"id": floor, "n": _NEWEST})
    with op.batch_alter_table("outbox_purges") as batch:
        batch.drop_column("pruned_through")
    stats = bind.dialect.name == "sqlite" and bind.exec_driver_sql(
        "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'").first()
    for name, table, _column in reversed(_INDEXES):
        op.drop_index(name, table_name=table)
        if stats:  # SQLite keeps a dropped index's statistics row; it would describe nothing
            bind.execute(sa.text("DELETE FROM sqlite_stat1 WHERE idx = :i"), {"i": name})
