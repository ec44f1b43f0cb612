"""The statements an engine runs while a block runs: a test helper (no Roster code here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa


@contextmanager
def captured(engine: sa.Engine, keep: Callable[[str], bool]) -> Iterator[list[tuple[str, Any]]]:
    """Every statement ``keep`` accepts that ``engine`` runs meanwhile, with its parameters.

    A cursor-event listener: Roster's hot paths (app/sql.py ``fetch``) go through
    ``Connection.execute`` while one is registered, so they are seen too."""
    seen: list[tuple[str, Any]] = []

    def _capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any,
                 _many: bool) -> None:
        if keep(statement):
            seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", _capture)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", _capture)
