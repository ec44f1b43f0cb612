"""`roster` commands against a database whose schema is not this code's: one line naming
the revision and what to run, never a traceback."""

from __future__ import annotations

import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.db import Database
from app.migrate import downgrade, head_revision, upgrade
from tests.conftest import make_tenant

register()


def _invoke(url: str, *args: str):
    return CliRunner().invoke(cli, list(args), env={"ROSTER_DATABASE__URL": url})


def test_commands_on_a_database_behind_the_code_name_its_revision(fresh_url):
    """At 0020 (`roster db upgrade` not run for this release): the worker and the purge,
    which run outside a command's transaction, ended in a traceback (no such column
    upstream_id_token, no such table outbox_purges), and `connection list` said only
    "database error: no such column". Each now names the revision and what to run."""
    upgrade(fresh_url)
    db = Database(fresh_url)
    make_tenant(db, "acme")
    db.dispose()
    downgrade(fresh_url, "0020")
    expected = (f"the database schema is at revision 0020, this Roster needs "
                f"{head_revision()}: run `roster db upgrade`")
    for args in (["worker", "--until-idle"], ["events", "purge"],
                 ["connection", "list", "--org", "acme"]):
        result = _invoke(fresh_url, *args)
        assert result.exit_code == 1, (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert expected in result.output, (args, result.output)


def test_a_command_on_a_database_a_newer_release_migrated_says_so(fresh_url):
    """A newer release migrated the database and changed a table this code reads: the
    command says so instead of quoting the database's error."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
        conn.exec_driver_sql("ALTER TABLE organizations RENAME COLUMN policy TO settings")
    engine.dispose()
    result = _invoke(fresh_url, "org", "list")
    assert result.exit_code == 1, result.output
    assert "at revision 9999 of a newer release" in result.output
    assert "Traceback" not in result.output


def test_the_worker_runs_on_against_a_database_a_newer_release_migrated(fresh_url):
    """A rolling deploy: the newer release migrated first (here only its revision, the
    tables this code uses unchanged); a worker of this release checks no revision at start
    and works on, as a web node of it stays ready (/readyz 200), until it is replaced."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    result = _invoke(fresh_url, "worker", "--until-idle")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output


def test_db_current_on_an_unreachable_database_is_one_line():
    """`roster db current` reads the revision outside a transaction: an unreachable
    database ended in an OperationalError traceback; now one line, exit 1."""
    url = "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1"
    result = _invoke(url, "db", "current")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert result.output.startswith("Error: database error: connection failed")


def test_a_table_missing_at_the_head_is_named_not_blamed_on_migrations(fresh_url):
    """At the head, a missing table is a fault: the command quotes the database's error
    instead of telling the operator to run `roster db upgrade`, which would do nothing."""
    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE mapping_revisions")  # no table refers to it
    engine.dispose()
    _invoke(fresh_url, "org", "create", "acme")
    result = _invoke(fresh_url, "mapping", "list", "--org", "acme")
    assert result.exit_code == 1, result.output
    assert "roster db upgrade" not in result.output
    assert "mapping_revisions" in result.output


def test_an_empty_revision_is_a_usage_error_not_a_traceback(fresh_url):
    """`roster db upgrade --revision "$REV"` with the variable unset (or `db downgrade ""`):
    Alembic's AssertionError and its traceback; now a usage error, nothing migrated. A
    target the database is at says so, not "already past" it (`heads`)."""
    for args in (["db", "upgrade", "--revision", ""], ["db", "upgrade", "--revision", "  "],
                 ["db", "downgrade", ""]):
        result = _invoke(fresh_url, *args)
        assert result.exit_code == 2, (args, result.output)
        assert isinstance(result.exception, SystemExit), (args, result.exception)
        assert (f"must not be empty: head, base or a revision such as {head_revision()}"
                in result.output)
    engine = sa.create_engine(fresh_url)
    with engine.connect() as conn:
        assert not sa.inspect(conn).has_table("alembic_version")
    engine.dispose()
    assert _invoke(fresh_url, "db", "upgrade").exit_code == 0
    result = _invoke(fresh_url, "db", "upgrade", "--revision", "heads")
    assert (result.exit_code, result.output) == (0, f"database at {head_revision()}\n")
