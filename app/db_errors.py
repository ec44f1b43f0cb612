"""Database errors by what to do about them: retry (``is_transient``), or fix the
configuration (``prepared_statement_lost``). SCIM's and the API's error handlers ask."""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError, OperationalError

from app.log_throttle import EveryInterval

log = logging.getLogger(__name__)


# PostgreSQL SQLSTATEs worth a retry: class 08 (connection), class 40 (serialization failure,
# deadlock), lock_not_available, query_canceled (statement/lock timeout), server shutting down.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40")
_TRANSIENT_SQLSTATES = frozenset({"55P03", "57014", "57P01", "57P02", "57P03"})
_TRANSIENT_SQLITE = ("database is locked", "database table is locked", "database is busy")


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
