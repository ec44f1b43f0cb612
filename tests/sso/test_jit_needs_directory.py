"""A JIT connection creates its users in a directory: one without a directory refused every
login as `misconfigured` ("JIT connection has no directory"), though the CLI and the API had
accepted it. Both now refuse it when it is set up, and nothing is written."""

from __future__ import annotations

from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import rows
from tests.sso.test_cli_and_discovery import _conn_id


def _connections(db) -> list[tuple[str, str]]:
    return [(r.name, r.login_policy) for r in rows(
        db, "SELECT name, login_policy FROM sso_connections ORDER BY name")]


def test_the_cli_refuses_a_jit_connection_without_a_directory(run, db, tenant):
    """create --policy jit and set --policy jit need --directory; with it, both work."""
    out = run("connection", "create", "--org", "acme", "--name", "j", "--policy", "jit",
              ok=False).output
    assert "a jit connection needs a directory" in out
    assert _connections(db) == []
    conn_id = _conn_id(run("connection", "create", "--org", "acme", "--name", "s").output)
    out = run("connection", "set", conn_id, "--policy", "jit", ok=False).output
    assert "directory" in out, out
    assert _connections(db) == [("s", "scim")]
    run("connection", "create", "--org", "acme", "--name", "j", "--policy", "jit",
        "--directory", tenant.directory.id)
    assert _connections(db) == [("j", "jit"), ("s", "scim")]
    # `set --directory` gives an existing connection its directory (by name or id).
    out = run("connection", "set", conn_id, "--policy", "jit", "--directory",
              tenant.directory.name).output
    assert out.strip() == "connection s: policy jit, match by email, enabled"
    assert [r.directory_id for r in rows(db, "SELECT directory_id FROM sso_connections "
                                             "WHERE name = 's'")] == [tenant.directory.id]


def test_the_api_refuses_a_jit_connection_without_a_directory(db, tenant, web):
    """POST and PATCH: a 400 naming `directory`; PATCH may not clear a JIT one's directory."""
    headers = make_key(db, "admin", tenant.org).headers
    base = f"/api/v1/orgs/{tenant.org.id}/connections"
    body = assert_problem(web.post(base, headers=headers, json={
        "name": "j", "protocol": "oidc", "login_policy": "jit", "check_discovery": False}),
        400, "validation")
    assert [e["field"] for e in body["errors"]] == ["directory"], body
    assert _connections(db) == []
    scim = web.post(base, headers=headers, json={"name": "s", "protocol": "oidc",
                                                 "check_discovery": False})
    assert scim.status_code == 201, scim.text
    body = assert_problem(web.patch(f"{base}/{scim.get_json()['id']}", headers=headers,
                                    json={"login_policy": "jit"}), 400, "validation")
    assert [e["field"] for e in body["errors"]] == ["directory"], body
    jit = web.post(base, headers=headers, json={
        "name": "j", "protocol": "oidc", "login_policy": "jit", "check_discovery": False,
        "directory": tenant.directory.name})
    assert jit.status_code == 201, jit.text
    body = assert_problem(web.patch(f"{base}/{jit.get_json()['id']}", headers=headers,
                                    json={"directory": None}), 400, "validation")
    assert [e["field"] for e in body["errors"]] == ["directory"], body
    assert _connections(db) == [("j", "jit"), ("s", "scim")]
