"""Login traces are kept by their age under the retention as it is now; SQLite's
code_verifier column says what PostgreSQL's says.

* ``sso_login_traces``: each trace's expiry was fixed when it was written
  (``expires_at``, the ``sso.trace_retention_days`` of that moment), so a changed retention
  applied only to traces written afterwards: shortened (a privacy request, a smaller
  database), the traces already stored stayed for the old period. The SSO purge, the
  listings and the lookup by correlation id now go by ``created_at`` (older than the
  retention as it is now: expired), which gets an index so the purge's delete is still
  found by index (ix_sso_login_traces_org_created leads with the organization and cannot
  serve it). ``expires_at`` is no longer written nor read: it becomes nullable and loses
  its index, and stays so a node of the previous release can still write a trace during a
  rolling deploy (such a node does not list a trace written by this release).
* ``oidc_login_requests.code_verifier``: 0027 widened it to VARCHAR(255) on PostgreSQL
  only (SQLite does not enforce a VARCHAR's length); SQLite's table is rebuilt so its
  declaration says 255 as well.

The downgrade gives traces written since the upgrade an ``expires_at`` of ``created_at``
plus 30 days (the default ``sso.trace_retention_days``: a migration does not read the
settings), restores its index and NOT NULL, drops the ``created_at`` index and declares
SQLite's code_verifier VARCHAR(128) again (its sealed verifiers are longer: SQLite keeps
them; PostgreSQL's column stays as 0027 left it).

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-07
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from alembic import op

import app.db

revision = "0030"
down_revision = "0029"
branch_labels = None
depends_on = None

_CREATED = "ix_sso_login_traces_created_at"
_EXPIRES = "ix_sso_login_traces_expires_at"
# The default sso.trace_retention_days, for the traces the downgrade must give an expiry.
_DEFAULT_RETENTION = timedelta(days=30)
_BATCH = 500

_TRACES = sa.table("sso_login_traces", sa.column("id", sa.String),
                   sa.column("created_at", app.db.UTCDateTime(timezone=True)),
                   sa.column("expires_at", app.db.UTCDateTime(timezone=True)))


def upgrade() -> None:
    """Index the traces' creation, free their expiry; SQLite: code_verifier VARCHAR(255)."""
    with op.batch_alter_table("sso_login_traces") as batch:
        batch.alter_column("expires_at", existing_type=app.db.UTCDateTime(timezone=True),
                           nullable=True)
        batch.drop_index(_EXPIRES)
        batch.create_index(_CREATED, ["created_at"])
    _forget_statistics(_EXPIRES)
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("oidc_login_requests") as batch:
            batch.alter_column("code_verifier", existing_type=sa.String(128),
                               type_=sa.String(255), existing_nullable=True)


def downgrade() -> None:
    """Give every trace an expiry again (created_at + 30 days where it has none), restore
    its index and NOT NULL; SQLite: code_verifier VARCHAR(128) again."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        with op.batch_alter_table("oidc_login_requests") as batch:
            batch.alter_column("code_verifier", existing_type=sa.String(255),
                               type_=sa.String(128), existing_nullable=True)
    while True:
        rows = bind.execute(sa.select(_TRACES.c.id, _TRACES.c.created_at)
                            .where(_TRACES.c.expires_at.is_(None)).limit(_BATCH)).all()
        if not rows:
            break
        bind.execute(sa.update(_TRACES).where(_TRACES.c.id == sa.bindparam("trace_id"))
                     .values(expires_at=sa.bindparam("expiry")),
                     [{"trace_id": row.id, "expiry": row.created_at + _DEFAULT_RETENTION}
                      for row in rows])
    with op.batch_alter_table("sso_login_traces") as batch:
        batch.drop_index(_CREATED)
        batch.create_index(_EXPIRES, ["expires_at"])
        batch.alter_column("expires_at", existing_type=app.db.UTCDateTime(timezone=True),
                           nullable=False)
    _forget_statistics(_CREATED)


def _forget_statistics(index: str) -> None:
    # SQLite keeps a dropped index's sqlite_stat1 row; it would describe nothing.
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql(
            "SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'").first():
        bind.execute(sa.text("DELETE FROM sqlite_stat1 WHERE idx = :i"), {"i": index})
