"""A database that is not migrated, or cannot be reached, is one line and exit 1 for every
`roster` command, also for those that read through a service on their own connections
instead of `CliContext.transaction` (they printed SQLAlchemy's traceback)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.sso.keys import make_key

register()

# Commands that reach the database outside CliContext.transaction.
OUTSIDE_A_TRANSACTION = [["events", "purge"], ["sso", "backchannel"],
                         ["worker", "--until-idle"], ["db", "current"]]


def _roster(url: str, *args: str, provider_key: str | None = None):
    env = {"ROSTER_DATABASE__URL": url}
    if provider_key:  # `sso backchannel` refuses to run without the OIDC provider's key
        env["ROSTER_OIDC_PROVIDER__SIGNING_KEY_FILE"] = provider_key
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.fixture(scope="module")
def provider_key(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A signing key for the OIDC provider, so each command gets as far as the database."""
    return str(make_key(tmp_path_factory.mktemp("op"), "op").key_file)


@pytest.mark.parametrize("args", OUTSIDE_A_TRANSACTION[:3], ids=" ".join)
def test_an_unmigrated_database_is_named_in_one_line(fresh_url, provider_key, args):
    """`events purge`, `sso backchannel`, `worker`: "run `roster db upgrade`", exit 1."""
    result = _roster(fresh_url, *args, provider_key=provider_key)
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == \
        "Error: the database is not migrated: run `roster db upgrade`"
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("args", [a for a in OUTSIDE_A_TRANSACTION if a[0] != "worker"],
                         ids=" ".join)
def test_a_database_that_cannot_be_opened_is_one_line(tmp_path, provider_key, args):
    """A SQLite file in a directory that does not exist: "database error: unable to open
    database file", exit 1, no traceback."""
    result = _roster(f"sqlite:///{tmp_path / 'missing' / 'roster.db'}", *args,
                     provider_key=provider_key)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == "Error: database error: unable to open database file"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_refused_migration_of_an_empty_database_says_base_as_db_current_does(fresh_url):
    """`db upgrade --revision nope` on an empty database said "at revision None"."""
    result = _roster(fresh_url, "db", "upgrade", "--revision", "nope")
    assert result.exit_code == 1
    assert result.output.strip() == ("Error: migration refused: Can't locate revision "
                                     "identified by 'nope'; the database is at revision base")
    assert "current: base" in _roster(fresh_url, "db", "current").output


def test_a_database_behind_this_release_names_both_revisions(fresh_url):
    """A database left at an older revision (an upgrade not run yet): a command that meets a
    column added since says where the database stands and what to run; it said only
    "database error: no such column: upstream_id_token" (SQLite) or PostgreSQL's words."""
    from app.migrate import code_head

    assert _roster(fresh_url, "db", "upgrade", "--revision", "0015").exit_code == 0
    result = _roster(fresh_url, "worker", "--until-idle")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        f"Error: the database schema is at revision 0015, this Roster needs {code_head()}: run "
        "`roster db upgrade`")
