"""A `roster` command against a database whose schema is not this code's (behind it: an
older release's revision, `roster db upgrade` not run; or ahead: a newer release migrated
it) refuses at once, in one line naming both revisions and what to run, exit 1, having
written nothing. It ran, and wrote, whenever its queries met no missing table or column
(`org create`, `demo`, `audit export`, `lifecycle purge` at 0010). The `db` group and
`--help` still work; `roster worker` serves on against a newer release (rolling deploys,
as `/readyz` does)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.migrate import alembic_config, code_head, upgrade
from tests.statements import captured

register()

NEWER = "9999_newer_release"


def _roster(url: str, *args: str):
    return CliRunner().invoke(cli, list(args), env={"ROSTER_DATABASE__URL": url})


def _one_behind() -> str:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    down = script.get_revision(code_head()).down_revision
    assert isinstance(down, str)
    return down


def _behind(revision: str) -> str:
    return (f"Error: the database schema is at revision {revision}, this Roster needs "
            f"{code_head()}: run `roster db upgrade`")


def _set_revision(url: str, revision: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    finally:
        engine.dispose()


def _organizations(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM organizations")).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.parametrize("args", [
    ["org", "create", "acme", "--name", "Acme"],
    ["demo"],
    ["audit", "export"],
    ["lifecycle", "purge"],
], ids=" ".join)
def test_a_database_at_an_old_revision_is_refused_before_anything_runs(fresh_url, args):
    """At 0010, each of these ran (and `org create`, `demo` wrote)."""
    upgrade(fresh_url, "0010")
    result = _roster(fresh_url, *args)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == _behind("0010")
    upgrade(fresh_url)
    assert _organizations(fresh_url) == 0


@pytest.mark.parametrize("args", [
    ["org", "create", "acme", "--name", "Acme"],
    ["demo"],
    ["audit", "export"],
    ["lifecycle", "purge"],
    ["worker", "--until-idle"],
], ids=" ".join)
def test_one_revision_behind_is_refused_too(fresh_url, args):
    """One migration short of head: the commands' queries mostly meet no missing column."""
    behind = _one_behind()
    upgrade(fresh_url, behind)
    result = _roster(fresh_url, *args)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == _behind(behind)
    upgrade(fresh_url)
    assert _organizations(fresh_url) == 0


def test_a_database_a_newer_release_migrated_is_refused_naming_it(fresh_url):
    """Ahead of the code: the newer release's `roster` is the one to run."""
    upgrade(fresh_url)
    _set_revision(fresh_url, NEWER)
    result = _roster(fresh_url, "org", "create", "acme", "--name", "Acme")
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        f"Error: the database schema is at revision {NEWER} of a newer release (this Roster "
        f"knows up to {code_head()}): run the newer release")
    assert _organizations(fresh_url) == 0


def test_the_worker_works_on_against_a_newer_release(fresh_url):
    """As `/readyz` stays 200 for the old nodes of a rolling deploy, the worker of the old
    release goes on until replaced (README: Operations)."""
    upgrade(fresh_url)
    _set_revision(fresh_url, NEWER)
    result = _roster(fresh_url, "worker", "--until-idle")
    assert result.exit_code == 0, result.output


def test_the_db_group_and_help_run_on_a_database_behind(fresh_url):
    """`db current`, `db upgrade`, and any `--help`, are what an operator runs next."""
    upgrade(fresh_url, "0010")
    assert _roster(fresh_url, "org", "create", "--help").exit_code == 0
    current = _roster(fresh_url, "db", "current")
    assert current.exit_code == 0, current.output
    assert "current: 0010" in current.output
    assert _roster(fresh_url, "db", "upgrade").exit_code == 0
    created = _roster(fresh_url, "org", "create", "acme", "--name", "Acme")
    assert created.exit_code == 0, created.output
    assert _organizations(fresh_url) == 1


def test_an_unmigrated_database_is_refused_before_anything_runs(fresh_url):
    """Never migrated: "run `roster db upgrade`", as before, and no table made."""
    result = _roster(fresh_url, "org", "list")
    assert result.exit_code == 1, result.output
    assert result.output.strip() == "Error: the database is not migrated: run `roster db upgrade`"


def test_the_check_reads_the_revision_once(fresh_url):
    """One statement per invocation on alembic_version (not a table lookup, not one per
    transaction): `lifecycle purge` runs several transactions."""
    upgrade(fresh_url)
    with captured(sa.engine.Engine, lambda s: "alembic_version" in s) as seen:  # every engine
        result = _roster(fresh_url, "lifecycle", "purge")
    assert result.exit_code == 0, result.output
    assert [statement for statement, _ in seen] == ["SELECT version_num FROM alembic_version"]
