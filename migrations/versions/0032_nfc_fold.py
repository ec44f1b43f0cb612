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

On PostgreSQL the upgrade first checks that ``normalize()`` can run (PostgreSQL 13 or later,
a ``UTF8`` database) and stops with what to do otherwise. It then locks users, groups and
units (ACCESS EXCLUSIVE) before it looks for clashes, so no name slips in between the check
and the index builds (an old node's write there could fail the build), and it holds no weaker
lock on them that a request could queue behind and then deadlock with: building the new
indexes beside the old ones under a SHARE lock, for reads meanwhile, deadlocked at the swap
with any request that had read users and waited to write, and the deadlock detector aborted
the migration. Requests on those tables wait for the whole upgrade (README: a maintenance
window on a large database). Clashes are found by the database with the index's own
expression, so the check refuses exactly what the index would (in the database's
``lower()``), without reading every user into Python.

The new fold is not coarser than the old one everywhere: ``İ`` written as ``I`` plus a
combining dot above is ``i`` to it (NFC makes it ``İ``, whose simple lower case is ``i``),
while ``i`` plus a combining dot stays as it is; the old fold joined those two, the new one
parts them. So the downgrade looks for the names the old fold joins too, and stops naming
them (a deleted user gives its name up) rather than failing in the middle of its index
build.

``users.primary_email``, what a sign-in matching by email compares, was the primary email
lower-cased (``str.lower``); it is now folded as names are, and the stored ones beyond ASCII
are computed again from ``emails`` (the downgrade lower-cases them again).

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from app.engine import register_fold
from app.errors import MigrationBlocked
from app.fold_clashes import free_folded_names, shared_keys, spelled
from app.folding import fold_text, simple_lower

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
_NEW = {"sqlite": "roster_fold({})", "postgresql": "lower(normalize({}, NFC))"}
_OLD = {"sqlite": "roster_lower({})", "postgresql": "lower({})"}


def upgrade() -> None:
    """Stop on names the NFC fold joins; else rebuild the fold's indexes with it."""
    bind = op.get_bind()
    _prepare(bind, check=True)
    expression = _NEW[bind.dialect.name]
    _stop_on_units(bind, expression, fold_text, "these unit paths differ only in Unicode "
                   "normalization (NFC against NFD), which the mapping now treats as one "
                   "unit", "roster db upgrade")
    free_folded_names(bind, "Unicode normalization (NFC against NFD: 'é' as one letter "
                            "and as 'e' plus a combining accent)", expression=expression)
    _create_on(expression)
    _refold_primary_emails(bind, fold_text)


def downgrade() -> None:
    """Back to the fold without normalization, once no two names it joins are left."""
    bind = op.get_bind()
    _prepare(bind, check=False)  # lower() needs neither (a LATIN1 database goes back)
    expression = _OLD[bind.dialect.name]
    old_fold = ("what the fold before 0032 (lower case without Unicode normalization) "
                "ignores, such as 'I' and 'i' each followed by a combining dot above, which "
                "the fold of 0032 tells apart")
    _stop_on_units(bind, expression, simple_lower, f"these unit paths differ only in "
                   f"{old_fold}", "roster db downgrade 0031")
    free_folded_names(bind, old_fold, simple_lower, expression=expression,
                      command="roster db downgrade 0031")
    _refold_primary_emails(bind, str.lower)
    _create_on(expression)


def _prepare(bind: sa.Connection, *, check: bool) -> None:
    """SQLite: the folds on the migrations' connection (its write lock is held already).
    PostgreSQL: with ``check``, that normalize() runs here; then lock the three tables until the
    migration commits."""
    if bind.dialect.name == "sqlite":
        register_fold(bind.connection.dbapi_connection)
        return
    if check:
        _require_normalize(bind)
    # All at once, first: what DROP INDEX takes anyway. Bounded by the migrations'
    # lock_timeout (a session idle in a transaction: the upgrade stops, changing nothing).
    bind.execute(sa.text("LOCK TABLE users, groups, units IN ACCESS EXCLUSIVE MODE"))


def _require_normalize(bind: sa.Connection) -> None:
    """MigrationBlocked unless PostgreSQL's normalize() runs here: 13 or later, UTF8."""
    version = int(bind.execute(sa.text("SHOW server_version_num")).scalar_one())
    if version < 130000:
        shown = bind.execute(sa.text("SHOW server_version")).scalar_one()
        raise MigrationBlocked(
            f"migration 0032 needs PostgreSQL 13 or later (for normalize()); this server is "
            f"{shown}: upgrade PostgreSQL (pg_upgrade, or a dump restored into 13 or later), "
            "then run `roster db upgrade` again; nothing changed")
    encoding = bind.execute(sa.text("SHOW server_encoding")).scalar_one()
    if encoding != "UTF8":
        raise MigrationBlocked(
            f"migration 0032 needs a database in the UTF8 encoding (PostgreSQL's normalize() "
            f"refuses any other); this one is {encoding}: dump it and restore it into a "
            "database created with `createdb -E UTF8 --locale=C.UTF-8 -T template0` (README, "
            "Databases), then run `roster db upgrade` again; nothing changed")


def _create_on(expression: str) -> None:
    for index, table, leading, column, where in _INDEXES:
        op.drop_index(index, table_name=table)
        condition = {} if where is None else {"sqlite_where": sa.text(where),
                                              "postgresql_where": sa.text(where)}
        op.create_index(index, table, [leading, sa.text(expression.format(column))],
                        unique=index.startswith("uq_"), **condition)


def _refold_primary_emails(bind: sa.Connection, folded: Callable[[str], str]) -> None:
    """``primary_email`` of each user whose primary (else first) email is beyond ASCII,
    computed again with ``folded``. Only those rows are read (the database picks them)."""
    stored_bytes = ("octet_length(primary_email)" if bind.dialect.name == "postgresql"
                    else "length(CAST(primary_email AS BLOB))")
    changed = []
    for user_id, emails, stored in bind.execute(
            sa.select(sa.column("id"), sa.column("emails", sa.JSON),
                      sa.column("primary_email", sa.String))
            .select_from(sa.table("users"))
            .where(sa.text(f"{stored_bytes} <> length(primary_email)"))):
        if stored.isascii() or not isinstance(emails, list):
            continue
        chosen = next((e for e in emails if isinstance(e, dict) and e.get("primary") is True),
                      emails[0] if emails else None)
        value = chosen.get("value") if isinstance(chosen, dict) else None
        if isinstance(value, str) and folded(value) != stored:
            changed.append({"i": user_id, "e": folded(value)})
    if changed:
        bind.execute(sa.text("UPDATE users SET primary_email = :e WHERE id = :i"), changed)


def _stop_on_units(bind: sa.Connection, expression: str, fold: Callable[[str], str],
                   what: str, command: str) -> None:
    """MigrationBlocked naming each set of units of one organization that ``expression``
    (the index's) joins."""
    clashes = [f"organization {org}: units " + spelled(found)
               for org, found in shared_keys(bind, "units", "organization_id", "path", fold,
                                             expression)]
    if clashes:
        raise MigrationBlocked(
            f"{what}; move the grants and child units of one of each onto the other and "
            f"delete it, then run `{command}` again:\n  " + "\n  ".join(clashes))
