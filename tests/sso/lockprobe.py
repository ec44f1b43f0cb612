"""Lock probes: whether another connection can write right now (no write lock held).
Waiting until another session waits for a lock: tests/lockwait.py."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from app.db import Database


def can_write(db: Database, statement: str) -> bool:
    """Run ``statement`` on a fresh, impatient connection (100 ms); False when it is locked.

    SQLite: any write needs the single write lock. PostgreSQL: an UPDATE waits only for the
    rows another transaction holds, so ``statement`` should touch the rows in question.
    """
    if db.dialect == "sqlite":
        probe = Database(db.url, busy_timeout_ms=100)
    else:
        probe = Database(db.url + ("&" if "?" in db.url else "?")
                         + "options=-c%20lock_timeout%3D100")
    try:
        with probe.transaction() as s:
            s.execute(text(statement))
        return True
    except OperationalError:
        return False
    finally:
        probe.dispose()

