"""PostgreSQL connections give up on a server that never answers (libpq waits forever by
default), and a URL's own connection parameters win over Roster's defaults."""

from __future__ import annotations

import socket
import time

import pytest
from sqlalchemy.exc import OperationalError

from app.db_errors import is_transient
from app.engine import make_engine


def test_a_server_that_never_answers_fails_the_connection_within_the_timeout():
    """A listener that takes the connection and says nothing (a dead host behind a proxy):
    the old engine waited without a limit, holding the request thread; now the default
    connect_timeout (10 s) ends it, as a transient error (503 with Retry-After)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # the kernel completes the handshake; nobody ever answers
    port = silent.getsockname()[1]
    engine = make_engine(f"postgresql+psycopg://roster@127.0.0.1:{port}/roster")
    started = time.monotonic()
    try:
        with pytest.raises(OperationalError) as raised:
            engine.connect().close()
        assert 8 <= time.monotonic() - started < 30
        assert is_transient(raised.value)
    finally:
        engine.dispose()
        silent.close()


def test_connection_parameters_of_the_url_win():
    """connect_timeout and keepalives are defaults only: the URL's own values are kept."""
    from app.engine import _postgres_connect_args

    assert _postgres_connect_args({"connect_timeout": "2"}, True) == {
        "keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10",
        "keepalives_count": "3"}
    assert _postgres_connect_args({}, False)["prepare_threshold"] is None
    assert _postgres_connect_args({}, True)["connect_timeout"] == "10"
