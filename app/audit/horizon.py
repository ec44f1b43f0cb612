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
``audit_chain_heads``, the upsert of ``_select_head``) before their ids and keep it until
they end. So the reader reads the newest id, then the transactions holding that lock
(``pg_locks``), and waits until each of them has ended (its virtual transaction id is gone):
one that starts appending later takes its id later, above the newest id read. The reader
takes no lock itself, so appenders never queue behind it (a ``LOCK TABLE ... SHARE``,
the first version of this, queued every new appender behind the waiting reader). After
``SETTLE_SECONDS`` (a stuck appender) it asks for the SHARE lock once with NOWAIT: still
held, that is PostgreSQL's ``lock_not_available``, answered 503 with Retry-After like any
lock timeout, and nothing is skipped. SQLite has one writer at a time: ids become visible in
id order, and there is nothing to wait for.
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, TEXT
from sqlalchemy.orm import Session

from app.models import AuditEvent

SETTLE_SECONDS = 2.0
_POLL_FIRST, _POLL_MOST = 0.001, 0.02
# The transactions appending now: ROW EXCLUSIVE on the chain heads, granted, in this
# database, other than this reader's.
_APPENDERS = text(
    "SELECT virtualtransaction FROM pg_locks WHERE locktype = 'relation'"
    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND relation = CAST('audit_chain_heads' AS regclass) AND mode = 'RowExclusiveLock'"
    " AND granted AND pid <> pg_backend_pid()")
# Which of them still run: a transaction holds its own virtual transaction id until it ends.
_RUNNING = text(
    "SELECT count(*) FROM pg_locks WHERE locktype = 'virtualxid' AND virtualxid = ANY(:ids)"
).bindparams(bindparam("ids", type_=ARRAY(TEXT)))
_LAST_TRY = text("LOCK TABLE audit_chain_heads IN SHARE MODE NOWAIT")


def settled_through(session: Session, settle_seconds: float = SETTLE_SECONDS) -> int | None:
    """The newest audit id below which no record can still appear (None: SQLite, where
    every id is settled). Read the page after calling this, bounded by it. An appender
    still running after ``settle_seconds`` is PostgreSQL's lock_not_available."""
    if session.get_bind().dialect.name != "postgresql":
        return None
    # Read first: an appender still running with a lower id took its head before its id,
    # so before this read, and is among those listed next.
    newest = int(session.scalar(select(func.max(AuditEvent.id))) or 0)
    appenders = list(session.scalars(_APPENDERS))
    deadline, pause = time.monotonic() + settle_seconds, _POLL_FIRST
    while appenders and session.scalar(_RUNNING, {"ids": appenders}):
        if time.monotonic() >= deadline:
            _last_try(session)
            break
        time.sleep(pause)
        pause = min(pause * 2, _POLL_MOST)
    return newest


def _last_try(session: Session) -> None:
    """Raise lock_not_available (55P03: a 503 to retry) while an appender still holds its
    chain head; return if none does any more. The lock is released at once."""
    savepoint = session.begin_nested()
    try:
        session.execute(_LAST_TRY)
    finally:
        savepoint.rollback()
