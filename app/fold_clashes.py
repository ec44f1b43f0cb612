"""Names a new case fold would join, found before a unique index on that fold is built.

SQLite's unique indexes on ``roster_lower(user_name)`` and ``roster_lower(display_name)``
(``app.sql.fold``) are rebuilt when the fold changes: migration 0011 (Unicode letters beyond
A-Z) and 0012 (Unicode's simple mapping, as PostgreSQL's ``lower()``, for ``İ`` and a final
``Σ``); and on both databases when 0032 moves them to ``roster_fold()`` and
``lower(normalize(x, NFC))`` (canonically equivalent names). Rows the old fold kept apart
and the new one joins would make the rebuild fail. A soft-deleted user gives its name up, as
Roster does when a new user takes a deleted user's name; two live holders, or two groups,
stop the upgrade with the list of them, to be resolved in the IdP (rename or delete one),
since choosing which of two provisioned users keeps its name is not a migration's call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import sqlalchemy as sa

from app.errors import MigrationBlocked
from app.sql import fold_text


def free_folded_names(bind: sa.Connection, why: str,
                      fold: Callable[[str], str] = fold_text) -> None:
    """Release the names deleted users share with others once folded by ``fold`` (the new
    fold); raise MigrationBlocked (nothing released) when live users or groups share one.
    ``why`` says what the old fold kept apart."""
    users = _holders(bind, "SELECT id, directory_id, user_name AS name, deleted_at FROM users",
                     fold)
    live = []
    for directory_id, holders in users:
        alive = [h for h in holders if h.deleted_at is None]
        if len(alive) > 1:
            live.append(f"directory {directory_id}: users " + _names(alive))
    live += [f"directory {directory_id}: groups " + _names(holders)
             for directory_id, holders in _holders(
                 bind, "SELECT id, directory_id, display_name AS name FROM groups", fold)]
    if live:
        raise MigrationBlocked(
            f"these names differ only in {why}; rename or delete one of each in the IdP, "
            "then run `roster db upgrade` again:\n  " + "\n  ".join(live))
    for _directory_id, holders in users:
        # All but one give the name up: the deleted ones (at most one holder is live).
        deleted = [h for h in holders if h.deleted_at is not None]
        for holder in deleted[: len(holders) - 1]:
            bind.execute(sa.text("UPDATE users SET user_name = :n WHERE id = :i"),
                         {"n": f"{holder.id}.deleted", "i": holder.id})


def _names(rows: list[sa.Row]) -> str:
    return ", ".join(f"{row.name!r} ({row.id})" for row in rows)


def _holders(bind: sa.Connection, query: str,
             fold: Callable[[str], str]) -> list[tuple[str, list[sa.Row]]]:
    """(directory id, rows) for each name that two or more rows of a directory share once
    folded (the rows' ``name`` column)."""
    by_name: dict[tuple[str, str], list[sa.Row]] = defaultdict(list)
    for row in bind.execute(sa.text(query)):
        by_name[(row.directory_id, fold(row.name))].append(row)
    return [(directory_id, rows) for (directory_id, _name), rows in by_name.items()
            if len(rows) > 1]
