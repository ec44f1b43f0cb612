"""Names a new case fold would join, found before a unique index on that fold is built.

SQLite's unique indexes on ``roster_lower(user_name)`` and ``roster_lower(display_name)``
(``app.sql.fold``) are rebuilt when the fold changes: migration 0011 (Unicode letters beyond
A-Z) and 0012 (Unicode's simple mapping, as PostgreSQL's ``lower()``, for ``İ`` and a final
``Σ``); and on both databases when 0032 moves them to ``roster_fold()`` and
``lower(normalize(x, NFC))`` (canonically equivalent names), and back when 0032 is
downgraded. Rows the old fold kept apart and the new one joins would make the rebuild fail.
A soft-deleted user gives its name up, as Roster does when a new user takes a deleted user's
name; two live holders, or two groups, stop the migration with the list of them, to be
resolved in the IdP (rename or delete one), since choosing which of two provisioned users
keeps its name is not a migration's call.

Given the index's own SQL ``expression``, the rows are grouped by the database itself
(``GROUP BY``, then a window only if two rows share a key), so the check finds exactly
what the unique index would refuse, in the database's own ``lower()``, and a million users
are not read into Python.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import sqlalchemy as sa

from app.errors import MigrationBlocked
from app.sql import fold_text


def free_folded_names(bind: sa.Connection, why: str,
                      fold: Callable[[str], str] = fold_text, *, expression: str | None = None,
                      command: str = "roster db upgrade") -> None:
    """Release the names deleted users share with others once folded by ``fold`` (the new
    fold; or in SQL by ``expression``, the new index's, ``{}`` standing for the column);
    raise MigrationBlocked (nothing released) when live users or groups share one. ``why``
    says what the old fold kept apart; ``command`` is what to run again."""
    users = shared_keys(bind, "users", "directory_id", "user_name", fold, expression,
                        extra=", deleted_at")
    live = []
    for directory_id, holders in users:
        alive = [h for h in holders if h.deleted_at is None]
        if len(alive) > 1:
            live.append(f"directory {directory_id}: users " + spelled(alive))
    live += [f"directory {directory_id}: groups " + spelled(holders)
             for directory_id, holders in shared_keys(
                 bind, "groups", "directory_id", "display_name", fold, expression)]
    if live:
        raise MigrationBlocked(
            f"these names differ only in {why}; rename or delete one of each in the IdP, "
            f"then run `{command}` again:\n  " + "\n  ".join(live))
    for _directory_id, holders in users:
        # All but one give the name up: the deleted ones (at most one holder is live).
        deleted = [h for h in holders if h.deleted_at is not None]
        for holder in deleted[: len(holders) - 1]:
            bind.execute(sa.text("UPDATE users SET user_name = :n WHERE id = :i"),
                         {"n": f"{holder.id}.deleted", "i": holder.id})


def spelled(rows: list[sa.Row]) -> str:
    """Each row's ``name``, quoted, with its code points escaped when it is beyond ASCII
    (an NFC and an NFD ``José`` look alike on a terminal), and its id."""
    return ", ".join(f"{row.name!r}" + ("" if row.name.isascii() else f" [{row.name!a}]")
                     + f" ({row.id})" for row in rows)


def shared_keys(bind: sa.Connection, table: str, leading: str, column: str,
                fold: Callable[[str], str], expression: str | None = None,
                extra: str = "") -> list[tuple[str, list[sa.Row]]]:
    """(``leading`` value, rows) for each key that two or more rows with one ``leading``
    value (a directory, an organization) share once ``column`` is folded: by ``fold`` in
    Python, or by the SQL ``expression`` in the database. The rows have ``id``, ``name``
    (the column) and the ``extra`` columns (", deleted_at")."""
    if expression is None:
        # Table and column names are the migrations' constants, never input.
        rows = bind.execute(sa.text(
            f"SELECT id, {leading} AS leading, {column} AS name{extra} FROM {table}"  # noqa: S608
        ))
        keyed = [((row.leading, fold(row.name)), row) for row in rows]
    else:
        # The keys first (a hash aggregate; nearly always none), then, only if some, every
        # row with its key's count: one pass each. A join of the rows with the grouped keys
        # was planned as a nested loop over the aggregate on an unanalysed table, minutes.
        folded = expression.format(column)
        shared = bind.execute(sa.text(
            f"SELECT 1 FROM {table} GROUP BY {leading}, {folded} "  # noqa: S608
            "HAVING count(*) > 1 LIMIT 1")).first()
        if shared is None:
            return []
        rows = bind.execute(sa.text(
            f"SELECT * FROM (SELECT id, {leading} AS leading, {column} AS name{extra}, "  # noqa: S608
            f"{folded} AS folded, count(*) OVER (PARTITION BY {leading}, {folded}) AS holders "
            f"FROM {table}) s WHERE holders > 1 ORDER BY id"))
        keyed = [((row.leading, row.folded), row) for row in rows]
    by_key: dict[tuple[str, str], list[sa.Row]] = defaultdict(list)
    for key_, row in keyed:
        by_key[key_].append(row)
    return [(leading_value, found) for (leading_value, _key), found in by_key.items()
            if len(found) > 1]
