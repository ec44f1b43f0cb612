"""Every `roster` command end to end against a real database, with its error paths."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.directory.tokens import hash_token
from tests.conftest import rows

register()


@pytest.fixture
def run(fresh_url):
    """Invoke `roster ...` with the fresh database configured through the environment."""
    runner = CliRunner()

    def _run(*args: str, ok: bool = True):
        result = runner.invoke(cli, list(args), env={"ROSTER_DATABASE__URL": fresh_url},
                               catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        else:
            assert result.exit_code != 0, result.output
            assert "Traceback" not in result.output
        return result

    _run("db", "upgrade")
    return _run


def _engine_rows(url, query):
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        out = list(conn.execute(sa.text(query)))
    engine.dispose()
    return out


def test_every_command_has_help():
    """--help works for every command and group without a database."""
    runner = CliRunner()
    commands = [[], ["db"], ["db", "upgrade"], ["org", "create"], ["unit", "add"],
                ["directory", "create"], ["directory", "token", "rotate"],
                ["directory", "token", "revoke"], ["directory", "token", "list"],
                ["serve"], ["demo"]]
    for args in commands:
        result = runner.invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage:" in result.output


def test_db_upgrade_and_current(run):
    """`db upgrade` reaches head and `db current` says so."""
    out = run("db", "current").output
    current = re.search(r"current: (\S+)", out).group(1)
    head = re.search(r"head:\s+(\S+)", out).group(1)
    assert current == head


def test_org_create_seeds_roles_and_refuses_duplicates(run, fresh_url):
    """An organization gets the role catalog; a second with the same slug is refused."""
    assert "organization acme created" in run("org", "create", "acme", "--name", "Acme").output
    roles = _engine_rows(fresh_url, "SELECT key FROM roles ORDER BY key")
    assert [r[0] for r in roles] == ["administrator", "approver", "buyer", "finance",
                                     "quote_only", "technician"]
    result = run("org", "create", "acme", ok=False)
    assert "already exists" in result.output
    assert "acme" in run("org", "list").output


def test_org_create_rejects_bad_slug(run):
    """Slugs are lower-case letters, digits and dashes."""
    assert "must be lower-case" in run("org", "create", "Bad Slug", ok=False).output


def test_blank_names_are_refused_as_over_the_api(run):
    """Whitespace-only names and an empty directory reference: one-line errors, nothing made."""
    assert "'--name': must not be blank" in \
        run("org", "create", "acme", "--name", "  ", ok=False).output
    run("org", "create", "acme")
    assert "'--name': must not be blank" in \
        run("directory", "create", "--org", "acme", "--vendor", "okta", "--name", "\t",
            ok=False).output
    assert "'--name': must not be blank" in \
        run("connection", "create", "--org", "acme", "--name", " ", ok=False).output
    out = run("connection", "create", "--org", "acme", "--name", "sso", "--directory", "",
              ok=False).output
    assert "directory" in out
    assert "(none)" in run("connection", "list", "--org", "acme").output


@pytest.mark.parametrize("command", [
    ("org", "create", "beta"),
    ("directory", "create", "--org", "acme", "--vendor", "okta"),
    ("connection", "create", "--org", "acme"),
    ("unit", "add", "--org", "acme", "--kind", "team"),
    ("role", "add", "custom", "--org", "acme", "--permission", "orders.place"),
    ("apikey", "create", "--role", "operator"),
])
@pytest.mark.parametrize("name", ["", " ", "\t\n"])
def test_an_empty_or_blank_name_is_a_usage_error_and_makes_nothing(run, fresh_url, command,
                                                                    name):
    """``--name ""`` (``--name "$NAME"``, the variable unset) made a directory named after
    its vendor, an organization after its slug, a role after its key and an API key without
    a name, silently; a blank one was refused by some commands as an ordinary error. Both
    are usage errors (exit 2) that name the option, and nothing is created."""
    run("org", "create", "acme")
    tables = ("organizations", "directories", "sso_connections", "units", "roles",
              "api_keys", "audit_events")
    before = {t: _engine_rows(fresh_url, f"SELECT count(*) FROM {t}")[0][0] for t in tables}
    result = run(*command, "--name", name, ok=False)
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--name': must not be " in result.output
    assert {t: _engine_rows(fresh_url, f"SELECT count(*) FROM {t}")[0][0]
            for t in tables} == before


def test_names_longer_than_their_column_are_one_line_errors(run, fresh_url):
    """An organization name or unit path past its column: the same one-line refusal on
    both databases (PostgreSQL refused it with a traceback, SQLite kept it)."""
    result = run("org", "create", "acme", "--name", "A" * 201, ok=False)
    assert "organization name is longer than 200 characters" in result.output
    assert "Traceback" not in result.output
    run("org", "create", "acme")
    parent = None
    for level in range(4):  # 4 x 200 characters and the separators fit in 1000
        name = f"{level}" * 200
        args = ["unit", "add", "--org", "acme", "--name", name, "--kind", "team"]
        run(*args, *(["--parent", parent] if parent else []))
        parent = f"{parent}/{name}" if parent else name
    result = run("unit", "add", "--org", "acme", "--name", "5" * 200, "--kind", "team",
                 "--parent", parent, ok=False)
    assert "unit path is longer than 1000 characters" in result.output
    assert _engine_rows(fresh_url, "SELECT count(*) FROM units")[0][0] == 4


def test_unit_add_builds_a_tree(run, fresh_url):
    """Units nest to any depth and are addressed by path."""
    run("org", "create", "acme")
    run("unit", "add", "--org", "acme", "--name", "Engineering", "--kind", "department")
    run("unit", "add", "--org", "acme", "--name", "Tokyo", "--kind", "location",
        "--parent", "Engineering")
    run("unit", "add", "--org", "acme", "--name", "Team A", "--kind", "team",
        "--parent", "Engineering/Tokyo")
    paths = [r[0] for r in _engine_rows(fresh_url, "SELECT path FROM units ORDER BY path")]
    assert paths == ["Engineering", "Engineering/Tokyo", "Engineering/Tokyo/Team A"]
    assert "Engineering/Tokyo/Team A" in run("unit", "list", "--org", "acme").output


def test_unit_add_error_paths(run):
    """Unknown org, unknown parent, duplicate path and a bad kind are one-line errors."""
    run("org", "create", "acme")
    assert "organization 'nope' does not exist" in run(
        "unit", "add", "--org", "nope", "--name", "X", "--kind", "team", ok=False).output
    assert "unit 'Ghost' does not exist" in run(
        "unit", "add", "--org", "acme", "--name", "X", "--kind", "team", "--parent", "Ghost",
        ok=False).output
    run("unit", "add", "--org", "acme", "--name", "X", "--kind", "team")
    assert "already exists" in run(
        "unit", "add", "--org", "acme", "--name", "X", "--kind", "team", ok=False).output
    assert "Invalid value for '--kind'" in run(
        "unit", "add", "--org", "acme", "--name", "Y", "--kind", "planet", ok=False).output


def test_directory_create_prints_url_and_token_once(run, fresh_url):
    """The token is printed once and only its hash is stored."""
    run("org", "create", "acme")
    out = run("directory", "create", "--org", "acme", "--vendor", "entra").output
    assert "SCIM base URL: http://127.0.0.1:8000/scim/v2" in out
    token = re.search(r"SCIM token:\s+(\S+)", out).group(1)
    stored = _engine_rows(fresh_url, "SELECT token_hash, prefix FROM directory_tokens")
    assert len(stored) == 1
    assert token not in stored[0][0]
    assert "entra" in run("directory", "list", "--org", "acme").output
    assert "already exists" in run(
        "directory", "create", "--org", "acme", "--vendor", "entra", ok=False).output
    assert "does not exist" in run(
        "directory", "create", "--org", "nope", "--vendor", "okta", ok=False).output


def test_token_rotate_list_revoke(run, fresh_url):
    """Rotation adds a second valid token, a third is refused, revoke ends one."""
    run("org", "create", "acme")
    run("directory", "create", "--org", "acme", "--vendor", "okta")
    directory_id = _engine_rows(fresh_url, "SELECT id FROM directories")[0][0]
    run("directory", "token", "rotate", "--directory", directory_id)
    listing = run("directory", "token", "list", "--directory", directory_id).output
    assert listing.count("valid") == 2
    refused = run("directory", "token", "rotate", "--directory", directory_id, ok=False)
    assert "already has 2 valid tokens" in refused.output
    oldest = _engine_rows(fresh_url, "SELECT id FROM directory_tokens ORDER BY created_at")[0][0]
    assert "revoked" in run("directory", "token", "revoke", "--directory", directory_id,
                            oldest).output
    listing = run("directory", "token", "list", "--org", "acme", "--directory", "okta").output
    assert "revoked" in listing
    assert "does not exist" in run("directory", "token", "revoke", "--directory", directory_id,
                                   "nope", ok=False).output
    assert "does not exist" in run("directory", "token", "list", "--directory", "nope",
                                   ok=False).output


def test_token_revoke_takes_the_prefix_as_token_list_prints_it(run, fresh_url):
    """`token list` prints `rst_xxxxxx...`; that cell, pasted into `token revoke`, names the
    token (it was "does not exist": the listing's `...` is not part of the prefix)."""
    run("org", "create", "acme")
    run("directory", "create", "--org", "acme", "--vendor", "okta")
    directory_id = _engine_rows(fresh_url, "SELECT id FROM directories")[0][0]
    listing = run("directory", "token", "list", "--directory", directory_id).output
    shown = re.search(r"(rst_\S+\.\.\.)", listing).group(1)
    assert "revoked" in run("directory", "token", "revoke", "--directory", directory_id,
                            shown).output
    assert _engine_rows(fresh_url, "SELECT count(*) FROM directory_tokens "
                                   "WHERE revoked_at IS NOT NULL") == [(1,)]


def test_demo_is_repeatable_and_issues_a_fresh_token(run, fresh_url):
    """`roster demo` creates the demo org once; each run prints a new working token."""
    first = re.search(r"SCIM token:\s+(\S+)", run("demo").output).group(1)
    second = re.search(r"SCIM token:\s+(\S+)", run("demo").output).group(1)
    assert first != second
    assert len(_engine_rows(fresh_url, "SELECT id FROM organizations")) == 1
    valid = _engine_rows(fresh_url, "SELECT id FROM directory_tokens WHERE revoked_at IS NULL")
    assert len(valid) == 1
    assert len(_engine_rows(fresh_url, "SELECT id FROM units")) >= 5


def test_demo_with_a_token_file_keeps_its_token_across_runs(run, fresh_url, tmp_path):
    """script/server runs `roster demo --token-file var/demo-token` on every start: the
    token an IdP was given keeps working (the old code revoked it on each restart). The file
    is the owner's only; a token no longer valid in it is replaced, and revoked."""
    path = tmp_path / "demo-token"
    first = re.search(r"SCIM token:\s+(\S+)", run("demo", "--token-file", str(path)).output)
    again = re.search(r"SCIM token:\s+(\S+)", run("demo", "--token-file", str(path)).output)
    assert first.group(1) == again.group(1) == path.read_text().strip()
    assert path.stat().st_mode & 0o777 == 0o600
    valid = _engine_rows(fresh_url, "SELECT token_hash FROM directory_tokens "
                                    "WHERE revoked_at IS NULL")
    assert [row.token_hash for row in valid] == [hash_token(first.group(1))]
    path.write_text("rst_not-a-token\n")
    third = re.search(r"SCIM token:\s+(\S+)", run("demo", "--token-file", str(path)).output)
    assert third.group(1) not in (first.group(1), "rst_not-a-token")
    assert path.read_text().strip() == third.group(1)
    valid = _engine_rows(fresh_url, "SELECT token_hash FROM directory_tokens "
                                    "WHERE revoked_at IS NULL")
    assert [row.token_hash for row in valid] == [hash_token(third.group(1))]


def test_commands_on_an_unmigrated_database_say_so(fresh_url):
    """A command before `db upgrade` explains what to do instead of a traceback."""
    result = CliRunner().invoke(cli, ["org", "list"],
                                env={"ROSTER_DATABASE__URL": fresh_url})
    assert result.exit_code != 0
    assert "roster db upgrade" in result.output


def test_db_downgrade_to_base(run, fresh_url):
    """`db downgrade base` removes the schema."""
    assert "database at base" in run("db", "downgrade", "base").output
    assert _engine_rows(fresh_url, "SELECT count(*) FROM alembic_version")[0][0] == 0


def test_serve_validates_settings_before_starting():
    """`roster serve` with bad settings exits with the configuration error."""
    result = CliRunner().invoke(cli, ["serve"], env={"ROSTER_SERVER__WORKERS": "x"})
    assert result.exit_code != 0
    assert "must be an integer" in str(result.exception or result.output)


__all__ = ["rows"]


def test_db_upgrade_behind_an_idle_transaction_gives_up_in_one_line(fresh_url):
    """PostgreSQL: a session idle in a transaction that read a table a migration alters.
    The old upgrade queued its exclusive lock behind it, and every query of that table
    queued behind the upgrade (SCIM froze); now it gives up after its lock_timeout with one
    line saying why and where the database stands, and runs once the session ends."""
    import sqlalchemy as sa

    from app.migrate import upgrade

    if not fresh_url.startswith("postgresql"):
        pytest.skip("SQLite has no table locks to queue behind")
    upgrade(fresh_url, "0019")
    engine = sa.create_engine(fresh_url)
    idle = engine.connect()
    idle.begin()
    idle.exec_driver_sql("SELECT count(*) FROM outbox_events")  # 0020 alters it
    try:
        result = CliRunner().invoke(cli, ["db", "upgrade"],
                                    env={"ROSTER_DATABASE__URL": fresh_url})
        assert result.exit_code == 1
        assert "a transaction holds a lock" in result.output
        assert "the database is at revision 0019" in result.output
        assert "Traceback" not in result.output
    finally:
        idle.close()
        engine.dispose()
    result = CliRunner().invoke(cli, ["db", "upgrade"], env={"ROSTER_DATABASE__URL": fresh_url})
    assert result.exit_code == 0, result.output


def test_db_upgrade_of_a_database_a_newer_release_migrated_says_so(fresh_url):
    """A database at a revision this release does not know: one line naming both, no
    Alembic traceback ("Can't locate revision"), for upgrade and downgrade."""
    import sqlalchemy as sa

    from app.migrate import upgrade

    upgrade(fresh_url)
    engine = sa.create_engine(fresh_url)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    for args in (["db", "upgrade"], ["db", "downgrade", "0018"]):
        result = CliRunner().invoke(cli, args, env={"ROSTER_DATABASE__URL": fresh_url})
        assert result.exit_code == 1, args
        assert "at revision 9999 of a newer release" in result.output
        assert "Traceback" not in result.output


def test_directory_disable_and_enable(run, fresh_url):
    """`roster directory disable` asks first (it deprovisions every user), then stops the
    directory; `enable` lets its tokens work again. Both are audited."""
    run("org", "create", "acme")
    run("directory", "create", "--org", "acme", "--vendor", "okta", "--name", "corp")
    [(directory_id,)] = _engine_rows(fresh_url, "SELECT id FROM directories")
    declined = CliRunner().invoke(cli, ["directory", "disable", "--directory", directory_id],
                                  env={"ROSTER_DATABASE__URL": fresh_url}, input="n\n")
    assert declined.exit_code == 1
    assert "Aborted" in declined.output
    assert _engine_rows(fresh_url, "SELECT status FROM directories") == [("active",)]
    out = run("directory", "disable", "--org", "acme", "--directory", "corp", "--yes").output
    assert f"directory corp disabled (id {directory_id})" in out
    assert _engine_rows(fresh_url, "SELECT status FROM directories") == [("disabled",)]
    assert "enabled" in run("directory", "enable", "--directory", directory_id).output
    assert _engine_rows(fresh_url, "SELECT status FROM directories") == [("active",)]
    assert [a for (a,) in _engine_rows(
        fresh_url, "SELECT action FROM audit_events WHERE action LIKE 'directory:%' "
                   "ORDER BY seq")][-2:] == ["directory:disable", "directory:enable"]
    assert "does not exist" in run("directory", "enable", "--directory", "nope",
                                   ok=False).output


def test_db_upgrade_to_an_older_revision_says_the_database_is_past_it(run):
    """`roster db upgrade --revision 0010` on a database at head changes nothing, as
    Alembic does, and says so: it printed only "database at 0029", as if it had run."""
    from app.migrate import head_revision

    result = run("db", "upgrade", "--revision", "0010")
    head = head_revision()
    assert f"database at {head}, already past 0010" in result.output
    assert "roster db downgrade 0010" in result.output
    assert run("db", "current").output.splitlines()[0] == f"current: {head}"
    assert run("db", "upgrade", "--revision", head).output.strip() == f"database at {head}"


@pytest.mark.parametrize("name", ["\u200b", "\u2060", "\ufeff", "\u00ad", "Sales\tEU",
                                  "x\x01", "Sales\u202eUE", "\u2067Sales\u2069"])
def test_an_invisible_or_control_name_is_a_usage_error(run, fresh_url, name):
    """``--name`` of invisible characters only (U+200B, U+2060, U+FEFF, a soft hyphen:
    ``str.strip()`` leaves them) or holding a control character, or a bidirectional
    override or isolate, passed as a name; it is a usage error now, as over the API, and
    nothing is made."""
    run("org", "create", "acme")
    before = _engine_rows(fresh_url, "SELECT count(*) FROM organizations")[0][0]
    for command in (("org", "create", "beta"), ("unit", "add", "--org", "acme", "--kind",
                                                 "team"),
                    ("connection", "create", "--org", "acme")):
        result = run(*command, "--name", name, ok=False)
        assert result.exit_code == 2, result.output
        assert "Invalid value for '--name': must " in result.output
    assert _engine_rows(fresh_url, "SELECT count(*) FROM organizations")[0][0] == before
    assert _engine_rows(fresh_url, "SELECT count(*) FROM units")[0][0] == 0
