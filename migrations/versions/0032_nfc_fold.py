"""Canonically equivalent names are one name: the case fold brings text to NFC first.

``José`` typed with the one letter ``é`` (NFC) and with ``e`` plus a combining acute (NFD,
what macOS keyboards, file names and some HR exports give) are the same text to every
reader (Unicode's canonical equivalence, UAX #15), but the fold compared code points: an IdP
could provision both as two users, or a JIT login in one form make a second account beside
the SCIM user in the other, and ``userName eq`` in the other form found nobody.
``app.sql.fold`` is now ``lower(normalize(x, NFC))`` on PostgreSQL and ``roster_fold()``
(``app.folding.fold_text``, NFC then Unicode's simple lower-case mapping) on SQLite.

The four indexes on the fold (the unique ``userName``, group ``displayName`` and unit path
indexes and the pending-manager index) are built again on the new expression. On SQLite it
is a function of a new name, ``roster_fold()`` (``roster_lower()`` stays, the old fold, for
the downgrade): a node of the previous release still running against the upgraded file
fails its writes of users, groups and units ("unknown function") instead of filing names
under keys of the old fold, which the new one would never find. Names the new fold joins
stop the upgrade as in 0011 (two live users or groups, named; a deleted user gives its name
up) and 0022 (units), and nothing changes.

``users.primary_email``, what a sign-in matching by email compares, was the primary email
lower-cased (``str.lower``); it is now folded as names are, and the stored ones beyond ASCII
are computed again from ``emails`` (the downgrade lower-cases them again).

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from app.engine import register_fold
from app.errors import MigrationBlocked
from app.fold_clashes import free_folded_names
from app.folding import fold_text

revision = "0032"
down_revision = "0031"
branch_labels = None
depends_on = None

# (index, table, leading column, folded column, partial-index condition)
_INDEXES = (
    ("uq_users_directory_username", "users", "directory_id", "user_name", None),
    ("uq_groups_directory_display_name", "groups", "directory_id", "display_name", None),
    ("uq_units_org_path", "units", "organization_id", "path", None),
    ("ix_users_pending_manager", "users", "directory_id", "manager_ref",
     "manager_ref IS NOT NULL"),
)


def upgrade() -> None:
    """Stop on names the NFC fold joins; else rebuild the fold's indexes with it."""
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        register_fold(bind.connection.dbapi_connection)
    _stop_on_units(bind)
    free_folded_names(bind, "Unicode normalization (NFC against NFD: 'é' as one letter "
                            "and as 'e' plus a combining accent)")
    _create_on("roster_fold({})" if bind.dialect.name == "sqlite"
               else "lower(normalize({}, NFC))")
    _refold_primary_emails(bind, fold_text)


def downgrade() -> None:
    """Back to the fold without normalization (every NFC-unique set of names is unique
    without it too)."""
    bind = op.get_bind()
    _refold_primary_emails(bind, str.lower)
    if bind.dialect.name == "sqlite":
        register_fold(bind.connection.dbapi_connection)
    _create_on("roster_lower({})" if bind.dialect.name == "sqlite" else "lower({})")


def _create_on(expression: str) -> None:
    for index, table, leading, column, where in _INDEXES:
        op.drop_index(index, table_name=table)
        condition = {} if where is None else {"sqlite_where": sa.text(where),
                                              "postgresql_where": sa.text(where)}
        op.create_index(index, table, [leading, sa.text(expression.format(column))],
                        unique=index.startswith("uq_"), **condition)


def _refold_primary_emails(bind: sa.Connection, folded: Callable[[str], str]) -> None:
    """``primary_email`` of each user whose primary (else first) email is beyond ASCII,
    computed again with ``folded``."""
    users = sa.table("users", sa.column("id", sa.String), sa.column("emails", sa.JSON),
                     sa.column("primary_email", sa.String))
    changed = []
    for user_id, emails, stored in bind.execute(
            sa.select(users.c.id, users.c.emails, users.c.primary_email)
            .where(users.c.primary_email.is_not(None))):
        if stored.isascii() or not isinstance(emails, list):
            continue
        chosen = next((e for e in emails if isinstance(e, dict) and e.get("primary") is True),
                      emails[0] if emails else None)
        value = chosen.get("value") if isinstance(chosen, dict) else None
        if isinstance(value, str) and folded(value) != stored:
            changed.append({"i": user_id, "e": folded(value)})
    if changed:
        bind.execute(sa.text("UPDATE users SET primary_email = :e WHERE id = :i"), changed)


def _stop_on_units(bind: sa.Connection) -> None:
    """MigrationBlocked naming each set of units of one organization the new fold joins."""
    sets: dict[tuple[str, str], list[str]] = defaultdict(list)
    for org, path, unit_id in bind.execute(sa.text(
            "SELECT organization_id, path, id FROM units ORDER BY organization_id, path")):
        sets[(org, fold_text(path))].append(f"{path!r} ({unit_id})")
    clashes = [f"organization {org}: units " + ", ".join(found)
               for (org, _key), found in sets.items() if len(found) > 1]
    if clashes:
        raise MigrationBlocked(
            "these unit paths differ only in Unicode normalization (NFC against NFD), which "
            "the mapping now treats as one unit; move the grants and child units of one of "
            "each onto the other and delete it, then run `roster db upgrade` again:\n  "
            + "\n  ".join(clashes))
