"""An admin, auditor or portal API key always belongs to an organization (a CHECK).

Only ``create_key`` kept such a key from being stored without one; a row made another way
(by hand, a restore, a script) is refused at authentication ("bound to no organization",
app/directory/apikeys.py) but could still be stored. The constraint
``ck_api_keys_org_role_has_org`` makes the database refuse it: every key is an operator key
or has its organization (operator keys have none).

Rows that break it stop the upgrade before anything changes, each named (id, prefix, role,
name) with what to do, as 0032 stops on the names it would join: a key without its
organization never worked since that check, so it is deleted or given its organization by
the operator, not by the migration. On SQLite the constraint needs the table rebuilt (batch
mode): the rows, the foreign key to organizations (ON DELETE CASCADE), the unique key hash
and the index on (organization_id, created_at) are kept; no table refers to api_keys. The
downgrade drops the constraint (again a rebuild on SQLite).

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from app.errors import MigrationBlocked

revision = "0033"
down_revision = "0032"
branch_labels = None
depends_on = None

# The constraint's name (the naming convention's, app/db.py) and condition, as the model
# declares them (app/models/api.py).
NAME = "ck_api_keys_org_role_has_org"
CONDITION = "role = 'operator' OR organization_id IS NOT NULL"


def upgrade() -> None:
    """Stop on keys that break the rule, named; else add the CHECK."""
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        # No key slips in between the check and the constraint; ADD CONSTRAINT takes this
        # lock anyway (bounded by the migrations' lock_timeout).
        bind.execute(sa.text("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE"))
    _stop_on_keys_without_their_organization(bind)
    with op.batch_alter_table("api_keys") as batch:
        batch.create_check_constraint(op.f(NAME), CONDITION)


def downgrade() -> None:
    """Drop the CHECK (the service and authentication still refuse such keys)."""
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_constraint(op.f(NAME), type_="check")


def _stop_on_keys_without_their_organization(bind: sa.Connection) -> None:
    found = bind.execute(sa.text(
        "SELECT id, prefix, role, name, revoked_at FROM api_keys "
        "WHERE role <> 'operator' AND organization_id IS NULL ORDER BY created_at, id")).all()
    if not found:
        return
    listed = [f"{row.id} {row.prefix}... {row.role} {row.name!r}"
              + (" (revoked)" if row.revoked_at is not None else "") for row in found]
    raise MigrationBlocked(
        f"{len(found)} admin, auditor or portal API key(s) belong to no organization (refused "
        "at sign-in already; Roster never creates them): delete each of these rows of "
        "api_keys or set its organization_id, then run `roster db upgrade` again:\n  "
        + "\n  ".join(listed))
