"""A command says what it did only once its transaction has committed: a commit the
database refuses printed the success line and then the error, and `connection delete`
asked its question about a connection that does not exist."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.cli.test_cli import _engine_rows
from tests.sso import forge
from tests.sso.keys import make_key

register()

_SQLITE_BLOCKER = [
    "CREATE TABLE commit_blocker_parent (id INTEGER PRIMARY KEY)",
    "CREATE TABLE commit_blocker (ref INTEGER REFERENCES commit_blocker_parent (id) "
    "DEFERRABLE INITIALLY DEFERRED)",
    "CREATE TRIGGER commit_blocker AFTER INSERT ON audit_events "
    "BEGIN INSERT INTO commit_blocker VALUES (1); END",
]
_PG_BLOCKER = [
    "CREATE TABLE commit_blocker_parent (id INTEGER PRIMARY KEY)",
    "CREATE TABLE commit_blocker (ref INTEGER REFERENCES commit_blocker_parent (id) "
    "DEFERRABLE INITIALLY DEFERRED)",
    "CREATE FUNCTION commit_blocker() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN INSERT INTO commit_blocker VALUES (1); RETURN NEW; END $$",
    "CREATE TRIGGER commit_blocker AFTER INSERT ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION commit_blocker()",
]


def _block_commits(url: str) -> None:
    """From now on every transaction that writes an audit event fails at its COMMIT (a
    deferred foreign key the database checks only then), on SQLite and PostgreSQL alike."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for statement in _SQLITE_BLOCKER if engine.dialect.name == "sqlite" else _PG_BLOCKER:
            conn.execute(sa.text(statement))
    engine.dispose()


@pytest.fixture
def roster(fresh_url):
    """`roster ARGS` on a migrated fresh database: the click Result."""
    runner = CliRunner()

    def _run(*args: str, ok: bool = True, stdin: str | None = None):
        result = runner.invoke(cli, list(args), env={"ROSTER_DATABASE__URL": fresh_url},
                               input=stdin)
        assert result.exception is None or isinstance(result.exception, SystemExit), \
            result.exception
        assert (result.exit_code == 0) == ok, result.output
        return result

    _run("db", "upgrade")
    _run("org", "create", "acme")
    return _run


def _conn_id(output: str) -> str:
    return re.search(r"\(id ([0-9a-f-]{36})\)", output).group(1)


def _audit_count(url: str) -> int:
    return _engine_rows(url, "SELECT count(*) FROM audit_events")[0][0]


@pytest.fixture
def prepared(roster, fresh_url, tmp_path):
    """What each command needs (a connection, a domain, an IdP metadata file, a rule
    file), made before commits are blocked; the blocked command's arguments by name."""
    conn_id = _conn_id(roster("connection", "create", "--org", "acme", "--name", "c").output)
    oidc_id = _conn_id(roster("connection", "create", "--org", "acme", "--name", "o",
                              "--protocol", "oidc").output)
    roster("connection", "domain", "add", conn_id, "acme.com")
    metadata = tmp_path / "idp.xml"
    metadata.write_text(forge.idp_metadata([make_key(tmp_path, "idp").cert_b64]))
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rules]]\nid = "r1"\nrole = "buyer"\nunit = "Sales"\n'
                     'match = { group = "Buyers" }\n')
    roster("unit", "add", "--org", "acme", "--name", "Sales", "--kind", "department")
    _block_commits(fresh_url)
    return {
        "org create": (["org", "create", "globex"], "created"),
        "unit add": (["unit", "add", "--org", "acme", "--name", "HR", "--kind", "team"],
                     "created"),
        "connection create": (["connection", "create", "--org", "acme", "--name", "d"],
                              "created"),
        "connection set": (["connection", "set", conn_id, "--match-by", "nameid"],
                           "match by nameid"),
        "metadata import": (["connection", "metadata", "import", conn_id, "--file",
                             str(metadata)], "imported"),
        "domain add": (["connection", "domain", "add", conn_id, "b.example"], "added"),
        "domain verify": (["connection", "domain", "verify", conn_id, "acme.com"],
                          "verified"),
        "connection oidc": (["connection", "oidc", oidc_id, "--client-id", "portal",
                             "--no-check"], "redirect URI"),
        "role add": (["role", "add", "clerk", "--org", "acme", "--permission",
                      "orders.view_own"], "added"),
        "mapping apply": (["mapping", "apply", str(rules), "--org", "acme", "--force"],
                          "applied"),
    }


@pytest.mark.parametrize("command", [
    "org create", "unit add", "connection create", "connection set", "metadata import",
    "domain add", "domain verify", "connection oidc", "role add", "mapping apply",
])
def test_a_commit_the_database_refuses_prints_no_success(prepared, roster, fresh_url,
                                                         command):
    """The commit fails: one error line, exit 1, no success line, nothing stored."""
    args, success = prepared[command]
    before = _audit_count(fresh_url)
    result = roster(*args, ok=False)
    assert result.exit_code == 1
    assert success not in result.output
    assert "Error: database error:" in result.output
    assert "Traceback" not in result.output
    assert _audit_count(fresh_url) == before


def test_connection_delete_of_a_missing_connection_asks_nothing(roster):
    """Without --yes, a connection that does not exist is said at once, no question."""
    result = roster("connection", "delete", "0" * 36, ok=False, stdin="y\n")
    assert "Delete the connection" not in result.output
    assert "no SSO connection" in result.output


def test_connection_delete_asks_naming_the_connection_then_deletes(roster, fresh_url):
    """Without --yes the question names the connection; 'n' keeps it, 'y' deletes it."""
    conn_id = _conn_id(roster("connection", "create", "--org", "acme", "--name",
                              "okta").output)
    kept = roster("connection", "delete", conn_id, ok=False, stdin="n\n")
    assert "Delete the connection okta," in kept.output
    assert _engine_rows(fresh_url, "SELECT count(*) FROM sso_connections")[0][0] == 1
    assert "connection okta deleted" in roster("connection", "delete", conn_id,
                                               stdin="y\n").output
    assert _engine_rows(fresh_url, "SELECT count(*) FROM sso_connections")[0][0] == 0


def test_directory_disable_of_a_missing_directory_asks_nothing(roster):
    """Without --yes, a directory that does not exist is said at once, no question."""
    result = roster("directory", "disable", "--directory", "0" * 36, ok=False, stdin="y\n")
    assert "Go on?" not in result.output
    assert "does not exist" in result.output
