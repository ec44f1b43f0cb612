"""How far a reader across organizations may page the audit log by id without skipping.

An organization's records join its chain while its head is locked, from the INSERT to the
COMMIT (app/audit/log.py): one organization's records take their ids and commit in the same
order, so a reader of one organization paging by id passes nothing still to come. Across
organizations the chain heads are different rows: on PostgreSQL a sequence hands ids out at
INSERT and rows appear at COMMIT, so organization A's record may take id n and still be
committing while B's record n+1 is visible. A cursor handed out after n+1 then skipped n
for good once it committed.

:func:`settled_through` gives an id every record at or below which is committed or never
will be: the newest id visible when it is called, once every transaction then appending
has ended. Appenders take their organization's chain head (ROW EXCLUSIVE on
``audit_chain_heads``) before their ids and keep it until they end, and a SHARE lock on the
table waits for exactly those (https://www.postgresql.org/docs/current/explicit-locking.html#LOCKING-TABLES).
The lock is taken in a savepoint and released at once by rolling it back, so a reader holds
appenders up only while it waits, for ``SETTLE_TIMEOUT`` at the most (a stuck appender: the
request fails as a lock timeout, 503 with Retry-After, and nothing is skipped). SQLite has
one writer at a time: ids become visible in id order, and there is nothing to wait for.
"""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from app.models import AuditEvent

SETTLE_TIMEOUT = "2s"
_SET_TIMEOUT = select(func.set_config("lock_timeout", SETTLE_TIMEOUT, True))
_WAIT_FOR_APPENDERS = text("LOCK TABLE audit_chain_heads IN SHARE MODE")


def settled_through(session: Session) -> int | None:
    """The newest audit id below which no record can still appear (None: SQLite, where
    every id is settled). Read the page after calling this, bounded by it."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    # Read first: an appender still running with a lower id took its head before its id,
    # so before this read, and the lock below waits for it.
    newest = int(session.scalar(select(func.max(AuditEvent.id))) or 0)
    savepoint = session.begin_nested()
    try:
        session.execute(_SET_TIMEOUT)  # a local setting: undone with the savepoint
        session.execute(_WAIT_FOR_APPENDERS)
    finally:
        savepoint.rollback()  # releases the lock: appenders go on at once
    return newest
