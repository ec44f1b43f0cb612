"""Every `roster` invocation releases its database connections when it ends, also on error:
a command called in-process (tests, a script importing the CLI) left its engine's pool open
until the garbage collector happened to find it."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register

register()


@pytest.fixture
def no_gc() -> Iterator[None]:
    """The garbage collector off: a connection only it would close stays open."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _open_connections(url: str) -> int:
    """Connections open to ``url``'s database other than this count's own: the SQLite
    file's descriptors in this process, or PostgreSQL's server-side sessions."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = Path(parsed.database or "").resolve()
        fds = Path("/proc/self/fd")
        count = 0
        for fd in os.listdir(fds):
            try:
                if os.readlink(fds / fd) == str(path):
                    count += 1
            except OSError:  # closed between listing and reading
                continue
        return count
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()")).scalar_one())
    finally:
        engine.dispose()


def _roster(url: str, *args: str) -> int:
    result = CliRunner().invoke(cli, list(args), env={"ROSTER_DATABASE__URL": url})
    assert "Traceback" not in result.output
    return result.exit_code


def test_a_command_leaves_no_connection_open(fresh_url, no_gc):
    """`db upgrade`, a write, a read and `db current`: none leaves a connection behind."""
    assert _roster(fresh_url, "db", "upgrade") == 0
    assert _open_connections(fresh_url) == 0
    assert _roster(fresh_url, "org", "create", "acme", "--name", "Acme") == 0
    assert _open_connections(fresh_url) == 0
    assert _roster(fresh_url, "org", "list") == 0
    assert _roster(fresh_url, "db", "current") == 0
    assert _open_connections(fresh_url) == 0


def test_a_failing_command_leaves_no_connection_open(fresh_url, no_gc):
    """A refused write (a duplicate organization) and an unknown organization: exit 1, and
    the connection the command used is closed all the same."""
    assert _roster(fresh_url, "db", "upgrade") == 0
    assert _roster(fresh_url, "org", "create", "acme") == 0
    assert _roster(fresh_url, "org", "create", "acme") == 1
    assert _open_connections(fresh_url) == 0
    assert _roster(fresh_url, "unit", "list", "--org", "nope") == 1
    assert _open_connections(fresh_url) == 0
