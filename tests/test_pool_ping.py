"""PostgreSQL pool connections are pinged only after idle time (app/pool_ping.py).

These tests run a PostgreSQL of their own (tests/pg_server.py) on either pass of the
suite, because they restart it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from app.db_errors import is_transient
from app.engine import make_engine
from app.pool_ping import IDLE_PING_SECONDS, ping_after_idle
from tests import pg_server


@pytest.fixture(scope="module")
def private_pg() -> Iterator[tuple[str, str]]:
    """(url, data directory root) of a PostgreSQL these tests may restart."""
    url, root = pg_server.start()
    try:
        yield url, root
    finally:
        pg_server.stop(root)


def _pings(engine, monkeypatch) -> list[object]:
    # Counts the dialect's pings (SQLAlchemy's own do_ping, wrapped).
    pings: list[object] = []
    plain = engine.dialect.do_ping

    def counting(dbapi_connection):
        pings.append(dbapi_connection)
        return plain(dbapi_connection)

    monkeypatch.setattr(engine.dialect, "do_ping", counting)
    return pings


def _one(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(text("SELECT 1")).scalar_one()


def test_busy_connections_go_unpinged_and_an_idle_dead_one_is_replaced(private_pg,
                                                                        monkeypatch):
    """make_engine: back-to-back checkouts send no ping (pool_pre_ping sent one each);
    after a server restart, a connection idle past IDLE_PING_SECONDS is pinged, found dead
    and replaced before the statement runs."""
    url, root = private_pg
    engine = make_engine(url, pool_size=2)
    try:
        pings = _pings(engine, monkeypatch)
        assert [_one(engine) for _ in range(5)] == [1] * 5
        assert pings == []
        pg_server.restart(root)
        time.sleep(IDLE_PING_SECONDS + 0.1)
        assert _one(engine) == 1
        assert len(pings) == 1
    finally:
        engine.dispose()


def test_a_connection_back_within_the_idle_window_fails_once_after_a_restart(private_pg,
                                                                             monkeypatch):
    """The price of not pinging a busy connection: after a restart its first statement
    fails as a disconnect (transient: SCIM answers 503 with Retry-After), which invalidates
    the pool; the next statement reconnects."""
    url, root = private_pg
    engine = create_engine(url, pool_size=2)
    ping_after_idle(engine, idle_seconds=60)
    try:
        pings = _pings(engine, monkeypatch)
        assert _one(engine) == 1
        pg_server.restart(root)
        with pytest.raises(DBAPIError) as failed:
            _one(engine)
        assert failed.value.connection_invalidated
        assert is_transient(failed.value), "a SCIM request answers it 503 with Retry-After"
        assert _one(engine) == 1
        assert pings == []
    finally:
        engine.dispose()
