"""`roster directory requests|report|oauth` against the suite database."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from app.scim.recorder import flush
from tests.conftest import rows
from tests.scim.support import CORE_USER, PATCH_OP

register()


@pytest.fixture
def roster(database_url):
    """Invoke `roster ...` against the migrated suite database."""
    runner = CliRunner()

    def _run(*args: str, ok: bool = True):
        result = runner.invoke(cli, list(args), env={"ROSTER_DATABASE__URL": database_url},
                               catch_exceptions=False)
        assert (result.exit_code == 0) is ok, result.output
        assert "Traceback" not in result.output
        return result

    return _run


def _traffic(client, tenant):
    user_id = client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": [CORE_USER], "userName": "cli@contoso.com"}).get_json()["id"]
    client.patch(f"/scim/v2/Users/{user_id}", headers=tenant.headers, json={
        "schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active",
                                               "value": "False"}]})
    client.post("/scim/v2/Users", headers=tenant.headers, json={
        "schemas": [CORE_USER], "userName": "CLI@contoso.com", "password": "hunter2"})
    flush(client.application)  # the recorder writes in the background; write it now


def test_requests_lists_newest_first_and_failed_only(roster, client, tenant):
    """`directory requests` prints a table; --failed keeps the 409; --bodies shows redaction."""
    _traffic(client, tenant)
    out = roster("directory", "requests", tenant.directory.id).output
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["AT", "METHOD", "PATH", "STATUS"]
    assert [line.split()[1] for line in lines[1:]] == ["POST", "PATCH", "POST"]
    failed = roster("directory", "requests", tenant.directory.id, "--failed", "--bodies").output
    assert " 409 " in failed
    assert "[REDACTED]" in failed
    assert "hunter2" not in failed
    limited = roster("directory", "requests", tenant.directory.id, "--limit", "1").output
    assert len(limited.splitlines()) == 2


def test_report_says_which_dialect(roster, client, tenant):
    """`directory report` names the legacy Entra dialect and the flag to set."""
    _traffic(client, tenant)
    out = roster("directory", "report", tenant.directory.id).output
    assert "entra-legacy" in out
    assert "add aadOptscim062020 to the tenant URL" in out
    assert re.search(r'booleans arrive as the strings "True" / "False": 1 request', out)


def test_report_and_requests_name_a_directory_by_name_with_org(roster, client, tenant):
    """DIRECTORY_REF is an id, or a name with --org, as in `directory token ...` (a name
    alone was "does not exist" though the directory did)."""
    _traffic(client, tenant)
    org, name = tenant.org.slug, tenant.directory.name
    by_name = roster("directory", "report", name, "--org", org).output
    assert by_name == roster("directory", "report", tenant.directory.id).output
    assert "entra-legacy" in by_name
    listed = roster("directory", "requests", name, "--org", org).output
    assert listed == roster("directory", "requests", tenant.directory.id).output
    assert "does not exist" in roster("directory", "report", name, ok=False).output


def test_unknown_directory_is_one_line_error(roster):
    """A directory that does not exist is a one-line error, non-zero exit."""
    result = roster("directory", "report", "no-such-directory", ok=False)
    assert "does not exist" in result.output


def test_oauth_create_rotate_revoke(roster, client, db, tenant):
    """create prints the credentials once; rotate replaces the secret; revoke ends it."""
    out = roster("directory", "oauth", "create", "--directory", tenant.directory.id).output
    client_id = re.search(r"Client id:\s+(\S+)", out).group(1)
    secret = re.search(r"Client secret:\s+(\S+)", out).group(1)
    assert "/oauth/token" in out
    form = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    assert client.post("/oauth/token", data=form).status_code == 200
    roster("directory", "oauth", "create", "--directory", tenant.directory.id, ok=False)
    rotated = roster("directory", "oauth", "rotate", "--directory", tenant.directory.id).output
    new_secret = re.search(r"Client secret:\s+(\S+)", rotated).group(1)
    assert client.post("/oauth/token", data=form).status_code == 401
    assert client.post("/oauth/token", data={**form, "client_secret": new_secret}) \
        .status_code == 200
    roster("directory", "oauth", "revoke", "--directory", tenant.directory.id)
    assert client.post("/oauth/token", data={**form, "client_secret": new_secret}) \
        .status_code in (400, 401)
    assert secret not in str(rows(db, "SELECT * FROM scim_oauth_clients"))


def test_a_directory_named_by_name_without_org_is_told_to_add_it(roster, tenant):
    """A directory's name without --org names no directory (its id is asked): the error
    says how to name it by name instead of only "does not exist", which it seemed to
    contradict (`directory list` shows the name)."""
    name = tenant.directory.name
    for args in (("directory", "disable", "--directory", name, "--yes"),
                 ("directory", "token", "list", "--directory", name),
                 ("directory", "report", name)):
        out = roster(*args, ok=False).output
        assert f"directory {name!r} does not exist" in out, args
        assert "by its name with --org" in out, args
    out = roster("directory", "report", "nope", "--org", tenant.org.slug, ok=False).output
    assert "does not exist" in out
    assert "--org" not in out
