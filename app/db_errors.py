"""Database errors by what to do about them: retry (``is_transient``), or fix the
configuration (``prepared_statement_lost``). SCIM's and the API's error handlers ask."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError

from app.log_throttle import EveryInterval

log = logging.getLogger(__name__)


# PostgreSQL SQLSTATEs worth a retry: class 08 (connection), class 40 (serialization failure,
# deadlock), class 53 (insufficient resources: disk full, out of memory, too many
# connections), lock_not_available, query_canceled (statement/lock timeout), server shutting
# down, and a read-only transaction (a hot standby: the node reached the replica after a
# failover; default_transaction_read_only), as SQLite's read-only database. A full disk is
# an outage to fix, but the request did nothing and may be sent again.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53")
_TRANSIENT_SQLSTATES = frozenset({"25006", "55P03", "57014", "57P01", "57P02", "57P03"})
# SQLite: busy, a full disk, and a file the process cannot open or write (a read-only
# mount, as after ext4 remounts on disk errors; wrong owner): outages, not the request's fault.
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "database is busy",
                     "database or disk is full", "attempt to write a readonly database",
                     "unable to open database file", "disk i/o error")


def is_transient(exc: BaseException) -> bool:
    """A database error worth retrying: lock timeout, deadlock, serialization, lost connection.

    Schema or programming errors (a missing table, say) are not transient and stay 500s.
    """
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    if type(orig).__module__.startswith("sqlite3"):
        return any(text in str(orig).lower() for text in _TRANSIENT_SQLITE)
    code = getattr(orig, "sqlstate", None)
    if code is None:
        # psycopg raises OperationalError without a SQLSTATE when it cannot connect at all.
        return isinstance(exc, OperationalError)
    return code[:2] in _TRANSIENT_SQLSTATE_CLASSES or code in _TRANSIENT_SQLSTATES


BUSY_DETAIL = "the service is busy; retry the request"
DISK_FULL_DETAIL = ("the database's disk is full; nothing was stored, retry the request once "
                    "space is freed")


def transient_detail(exc: BaseException) -> str:
    """What the client's 503 says of a transient error: a full disk (SQLite's "database or
    disk is full", PostgreSQL's SQLSTATE 53100) by name, as an outage an operator must end,
    anything else as busy. "busy" sent a client to retry at once what failed until space
    was freed."""
    if not isinstance(exc, DBAPIError):
        return BUSY_DETAIL
    full = (getattr(exc.orig, "sqlstate", None) == "53100"
            or "database or disk is full" in str(exc.orig).lower())
    return DISK_FULL_DETAIL if full else BUSY_DETAIL


# What the log line of a 503 calls each transient SQLSTATE (PostgreSQL appendix A).
_TRANSIENT_NAMES = {
    "25006": "read-only transaction (a standby, or default_transaction_read_only)",
    "40P01": "deadlock detected", "40001": "serialization failure",
    "55P03": "lock not available", "57014": "query canceled",
    "57P01": "server shutting down", "57P02": "server crashed", "57P03": "server starting up",
    "53100": "disk full", "53200": "out of memory", "53300": "too many connections",
}
_STATEMENT_SHOWN = 160


def describe_transient(exc: BaseException) -> str:
    """A transient error for the log: what it was (a deadlock is named, with its SQLSTATE),
    where PostgreSQL says it happened, and the start of the statement (no bound values)."""
    if not isinstance(exc, DBAPIError):
        return type(exc).__name__
    orig = exc.orig
    code = getattr(orig, "sqlstate", None)
    if exc.connection_invalidated:
        what = "connection lost"
    elif code is not None:
        name = _TRANSIENT_NAMES.get(code) or (
            "connection error" if code.startswith("08") else type(orig).__name__)
        what = f"{name} (SQLSTATE {code})"
    else:
        first = str(orig).strip().splitlines()
        what = f"{type(exc).__name__}: {first[0] if first else type(orig).__name__}"
    # A deadlock's context names the row it waited for ("while locking tuple (0,5) in
    # relation "users""): with the statement, enough to tell which lock order broke.
    context = getattr(getattr(orig, "diag", None), "context", None)
    if context:
        what += f"; {' '.join(context.split())}"
    if exc.statement:
        statement = " ".join(exc.statement.split())
        if len(statement) > _STATEMENT_SHOWN:
            statement = statement[:_STATEMENT_SHOWN] + "..."
        what += f"; statement: {statement}"
    return what


# PostgreSQL's answer to a statement psycopg prepared on another server connection: the
# name is unknown (26000 invalid_sql_statement_name) or taken (42P05 duplicate_prepared_...).
_LOST_PREPARED_SQLSTATES = frozenset({"26000", "42P05"})
_LOST_PREPARED_LOG = EveryInterval(60.0)


def prepared_statement_lost(exc: BaseException) -> bool:
    """Whether ``exc`` is PostgreSQL not knowing (or already knowing) a statement psycopg
    prepared: a pooler in transaction mode gave the transaction another server connection
    (README, "Behind a connection pooler"). Logs what to do, at most once a minute per
    process; the request stays a 500, as the configuration is wrong, not the moment."""
    if not isinstance(exc, DBAPIError):
        return False
    if getattr(exc.orig, "sqlstate", None) not in _LOST_PREPARED_SQLSTATES:
        return False
    if _LOST_PREPARED_LOG.due():
        log.error("PostgreSQL does not have a statement psycopg prepared on this connection: "
                  "a pooler in transaction mode (PgBouncer) is in front of it? Set "
                  "database.prepared_statements = false (ROSTER_DATABASE__PREPARED_STATEMENTS"
                  "=false), or let the pooler keep prepared statements")
    return True
