"""`roster apikey create/list/revoke/rotate` end to end: the printed key works over HTTP."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from app.cli import cli
from app.cli.commands import register
from app.db import utcnow
from app.models.api import ApiKey
from tests.conftest import roster_cli, rows

register()
KEY = re.compile(r"API key: (rk_[A-Za-z0-9_-]+)")


@pytest.fixture
def roster(database_url, db):
    """Invoke `roster ...` against the suite's database (cleaned after the test by `db`)."""
    return roster_cli(database_url)


def test_every_apikey_command_has_help():
    """--help works for the apikey group and each command without a database."""
    for args in (["apikey"], ["apikey", "create"], ["apikey", "list"], ["apikey", "revoke"],
                 ["apikey", "rotate"]):
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0, args
        assert "Usage:" in result.output, args


def test_create_prints_a_key_once_that_works(roster, client, db, tenant):
    """An admin key created at the CLI reads its organization over the API."""
    out = roster("apikey", "create", "--role", "admin", "--org", tenant.org.slug,
                 "--expires", "90d", "--name", "ci").output
    key = KEY.search(out).group(1)
    response = client.get(f"/api/v1/orgs/{tenant.org.slug}",
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200
    assert key not in str(rows(db, "SELECT * FROM api_keys"))
    listing = roster("apikey", "list").output
    assert key[:11] in listing
    assert "admin" in listing
    assert "ci" in listing
    assert key not in listing
    assert rows(db, "SELECT actor_type FROM audit_events WHERE action = 'api_key:create'") \
        == [("operator",)]


def test_rotate_replaces_and_revoke_stops_a_key(roster, client):
    """Rotation issues a working key and retires the old; revoke stops the new one."""
    old = KEY.search(roster("apikey", "create", "--role", "operator").output).group(1)
    new = KEY.search(roster("apikey", "rotate", old[:11]).output).group(1)
    assert new != old
    assert client.get("/api/v1/orgs", headers={"Authorization": f"Bearer {old}"}) \
        .status_code == 401
    assert client.get("/api/v1/orgs", headers={"Authorization": f"Bearer {new}"}) \
        .status_code == 200
    assert "revoked" in roster("apikey", "revoke", new[:11]).output
    assert client.get("/api/v1/orgs", headers={"Authorization": f"Bearer {new}"}) \
        .status_code == 401
    assert "revoked" in roster("apikey", "list").output


def test_rotate_and_revoke_take_the_prefix_as_list_prints_it(roster, client):
    """`apikey list` prints `rk_xxxxxxxx...`; that cell names the key to rotate and revoke
    (it was "does not exist": the listing's `...` is not part of the prefix)."""
    old = KEY.search(roster("apikey", "create", "--role", "operator").output).group(1)
    shown = re.search(r"(rk_\S+\.\.\.)", roster("apikey", "list").output).group(1)
    new = KEY.search(roster("apikey", "rotate", shown).output).group(1)
    assert client.get("/api/v1/orgs", headers={"Authorization": f"Bearer {old}"}) \
        .status_code == 401
    shown = f"{new[:11]}..."
    assert shown in roster("apikey", "list").output
    assert "revoked" in roster("apikey", "revoke", shown).output
    assert client.get("/api/v1/orgs", headers={"Authorization": f"Bearer {new}"}) \
        .status_code == 401


def test_rotating_an_expired_key_needs_an_expiry_for_the_new_one(roster, client, db, tenant):
    """`apikey rotate` of a key made with --expires 30d that has expired: its replacement
    never expired (the old expiry was dropped as past). Now it is refused, nothing
    changes, and with --expires the new key has that expiry."""
    old = KEY.search(roster("apikey", "create", "--role", "auditor", "--org", "acme",
                            "--expires", "30d").output).group(1)
    with db.transaction() as session:
        session.execute(update(ApiKey).values(expires_at=utcnow() - timedelta(days=1)))
    out = roster("apikey", "rotate", old[:11], ok=False).output
    assert "expired on" in out
    assert "--expires" in out
    assert [(r.revoked_at, r.n) for r in rows(
        db, "SELECT revoked_at, count(*) AS n FROM api_keys GROUP BY revoked_at")] == [(None, 1)]
    new = KEY.search(roster("apikey", "rotate", old[:11], "--expires", "7d").output).group(1)
    expires = rows(db, "SELECT expires_at FROM api_keys WHERE prefix = :p", p=new[:11])[0][0]
    assert expires is not None
    headers = {"Authorization": f"Bearer {new}"}
    assert client.get("/api/v1/orgs/acme", headers=headers).status_code == 200


@pytest.mark.parametrize(("args", "message"), [
    (["create", "--role", "auditor"], "must be bound to an organization"),
    (["create", "--role", "operator", "--org", "acme"], "deployment-wide"),
    (["create", "--role", "operator", "--expires", "yesterday"], "must look like"),
    (["create", "--role", "operator", "--expires", "2001-01-01"], "in the past"),
    (["create", "--role", "admin", "--org", "nope"], "does not exist"),
    (["revoke", "rk_missing"], "does not exist"),
])
def test_bad_input_is_one_line_and_nonzero(roster, tenant, args, message):
    """Errors are one clear line with a non-zero exit, never a traceback."""
    assert message in roster("apikey", *args, ok=False).output


@pytest.mark.parametrize("expires", ["0d", "0h", "00w", "yesterday", "2001-01-01"])
def test_an_expiry_not_in_the_future_is_a_usage_error(roster, expires):
    """`--expires 0d` (now) exited 1 with "expires_at is in the past", after the other bad
    expiries had been usage errors (exit 2) naming --expires: now one of them."""
    result = roster("apikey", "create", "--role", "operator", "--expires", expires, ok=False)
    assert result.exit_code == 2
    assert "Invalid value for --expires" in result.output
    assert "expires_at" not in result.output


def test_create_refuses_a_name_the_api_refuses(roster, client, keys, db):
    """A 201-character name was cut to 200 at the CLI; the API refuses it: both refuse."""
    long_name = "n" * 201
    out = roster("apikey", "create", "--role", "operator", "--name", long_name,
                 ok=False).output
    assert "longer than 200 characters (201 given)" in out
    response = client.post("/api/v1/apikeys", headers=keys["operator"].headers,
                           json={"role": "operator", "name": long_name})
    assert response.status_code == 400
    assert rows(db, "SELECT count(*) AS n FROM api_keys WHERE name LIKE 'nnn%'")[0].n == 0
    out = roster("apikey", "create", "--role", "operator", "--name", "   ", ok=False).output
    assert "must not be blank" in out
    roster("apikey", "create", "--role", "operator", "--name", "n" * 200)
    assert rows(db, "SELECT length(name) AS n FROM api_keys WHERE name LIKE 'nnn%'")[0].n == 200


def test_a_key_given_in_full_is_not_repeated_in_the_error(roster, client, db, tenant):
    """`apikey revoke` with the key itself instead of its id or prefix (someone revoking a
    leaked key): 'does not exist' without the key; a directory token given in full to the
    API's revoke is a 404 whose detail does not quote it either."""
    key = KEY.search(roster("apikey", "create", "--role", "operator").output).group(1)
    out = roster("apikey", "revoke", key, ok=False).output
    assert "does not exist" in out
    assert key not in out
    assert key[11:] not in out
    url = (f"/api/v1/orgs/{tenant.org.id}/directories/{tenant.directory.id}/tokens/"
           f"{tenant.token}/revoke")
    resp = client.post(url, headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 404, resp.text
    # (Its "instance" is the caller's own request path, as sent.)
    assert tenant.token[10:] not in resp.get_json()["detail"], resp.text
