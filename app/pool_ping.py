"""PostgreSQL pool connections are pinged only after they sat idle.

SQLAlchemy's ``pool_pre_ping`` sends ``SELECT 1`` on every checkout, so every SCIM request
on PostgreSQL paid one more round trip to the server: on loopback ~45 µs of the app's CPU
and ~80 µs of wall time per transaction (bench/README.md, session 9), and a full network
round trip where the database is on another host.

Here a connection that went back to the pool less than ``IDLE_PING_SECONDS`` ago is handed
out as it is, and any other one is pinged first (the pessimistic disconnect handling of
SQLAlchemy's "Dealing with Disconnects", through the pool's ``checkout`` event). A dead
one is replaced before the request sees it, and a disconnect invalidates every older
pooled connection (a restarted server killed them all).

What this gives up: right after a server restart under steady load, a connection used
within the last second is not pinged, so the first statement of one request per worker
fails (as requests in flight during the restart fail anyway). A lost connection is a
transient error, so that request is answered 503 with Retry-After, which Okta and Entra
retry; the failure invalidates the pool, and later requests get new connections.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Engine, event, exc

# A connection back in the pool for less than this is taken to be alive.
IDLE_PING_SECONDS = 1.0
_SINCE = "roster.idle_since"


def ping_after_idle(engine: Engine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """Install the checkout ping on ``engine`` (create it without ``pool_pre_ping``)."""
    dialect = engine.dialect

    def _idle_from_now(_dbapi_connection: Any, record: Any) -> None:
        record.info[_SINCE] = time.monotonic()

    event.listen(engine, "connect", _idle_from_now)  # a new connection is alive
    event.listen(engine, "checkin", _idle_from_now)

    @event.listens_for(engine, "checkout")
    def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_SINCE)
        if since is not None and time.monotonic() - since < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                # The pool reconnects this one and drops every connection older than now.
                raise exc.InvalidatePoolError() from error
            raise
