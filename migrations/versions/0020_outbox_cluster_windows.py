"""Webhook fan-out moves by the pull feed's txid windows; txids carry their cluster.

Two defects on PostgreSQL. (1) The fan-out cursor of 0019 (an outbox id, passed once a later
snapshot's xmin reached a stored xmax) was held back for good by a transaction left idle for
hours, and by a ``pending_xmax`` restored from another cluster, while every round read the
outbox again from the cursor; and an INSERT takes its id (``nextval``) before its
transaction has an xid when the outbox row is its first write, so id order and visibility
were not tied. The cursor is now a position in the feed's own windows
(``webhook_cursors.position``, app/events/window.py). (2) After ``pg_dump`` and a restore on
another cluster, rows keep the old cluster's txids and cursors the old cluster's snapshots,
while the new cluster counts from its own: a stored cursor skipped every event written after
the move. Each row now records its cluster (``outbox_events.cluster_id``, the
``system_identifier`` of ``pg_control_system()``, readable without superuser; about 6 us
an INSERT: the default reads the control file), and the feed's snapshots carry it too.

Existing fan-out cursors are converted so that no event is lost or sent twice: every id up
to ``last_outbox_id`` was fanned out (0019's rule), so the new position counts as done the
transactions below both the oldest txid of a row above that id and the current xmin (all of
them ended, and their rows at or below that id); a later row that already has a delivery to
the endpoint gets no second one. A cursor at 0 starts from the beginning, guarded the same
way. Existing rows get this cluster's id: upgrade before moving a database, not after.
Downgrade turns a position back into the id below the oldest row it has not passed (run
it with the workers stopped, as 0019's rule assumes).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

# A default may not hold a subquery, but may take a field of a function's row (a SQL
# function wrapping the SELECT cost five times as much per INSERT: it is not inlined).
_CLUSTER_ID = "(pg_catalog.pg_control_system()).system_identifier"
_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    """Add outbox_events.cluster_id and webhook_cursors.position; convert the cursors."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    here = None
    if postgres:
        here = bind.scalar(sa.text(f"SELECT {_CLUSTER_ID}"))
    # PostgreSQL: the constant first (existing rows, no rewrite), then the live default.
    op.add_column("outbox_events", sa.Column("cluster_id", sa.BigInteger(), nullable=True,
                                             server_default=sa.text(str(here)) if postgres
                                             else None))
    if postgres:
        op.alter_column("outbox_events", "cluster_id",
                        server_default=sa.text(_CLUSTER_ID))
    op.add_column("webhook_cursors", sa.Column("position", _JSON, nullable=True))
    if postgres:
        for endpoint, last in bind.execute(sa.text(
                "SELECT endpoint, last_outbox_id FROM webhook_cursors")).all():
            if last > 0:
                _set_position(bind, endpoint, last, here)
    op.drop_column("webhook_cursors", "pending_xmax")
    op.drop_column("webhook_cursors", "pending_outbox_id")


def _set_position(bind: sa.Connection, endpoint: str, last: int, here: int) -> None:
    bound = bind.scalar(sa.text(
        "SELECT least(pg_snapshot_xmin(pg_current_snapshot())::text::bigint, "
        "(SELECT min(txid) FROM outbox_events WHERE id > :last))"), {"last": last})
    position = [0, [bound, 0, [], here], None]  # transactions below ``bound`` were done
    bind.execute(sa.text("UPDATE webhook_cursors SET position = CAST(:p AS jsonb) "
                         "WHERE endpoint = :e"), {"p": json.dumps(position), "e": endpoint})


def downgrade() -> None:
    """Back to 0019's cursor (an id, nothing pending); drop the columns."""
    bind = op.get_bind()
    postgres = bind.dialect.name == "postgresql"
    op.add_column("webhook_cursors",
                  sa.Column("pending_outbox_id", sa.BigInteger(), nullable=True))
    op.add_column("webhook_cursors", sa.Column("pending_xmax", sa.BigInteger(), nullable=True))
    if postgres:
        here = bind.scalar(sa.text(f"SELECT {_CLUSTER_ID}"))
        for endpoint, position in bind.execute(sa.text(
                "SELECT endpoint, position FROM webhook_cursors")).all():
            bind.execute(sa.text("UPDATE webhook_cursors SET last_outbox_id = :l "
                                 "WHERE endpoint = :e"),
                         {"l": _last_id(bind, position, here), "e": endpoint})
    op.drop_column("webhook_cursors", "position")
    op.drop_column("outbox_events", "cluster_id")


def _last_id(bind: sa.Connection, position: list | None, here: int) -> int:
    """The id below the oldest row the position has not passed (rows of another cluster
    are passed by a snapshot of this one); 0 when unsure (0019 skips what has a delivery)."""
    done = position[1] if position and len(position) == 3 else None
    if done is None or (len(done) == 4 and done[3] != here):
        return 0
    xmin = done[0]
    snapshot = f"{xmin}:{xmin + done[1]}:{','.join(str(xmin + x) for x in done[2])}"
    return bind.scalar(sa.text(
        "SELECT coalesce((SELECT min(id) - 1 FROM outbox_events WHERE cluster_id = :here "
        "AND NOT pg_visible_in_snapshot(txid::text::xid8, CAST(:s AS pg_snapshot))), "
        "(SELECT max(id) FROM outbox_events), 0)"), {"here": here, "s": snapshot})
