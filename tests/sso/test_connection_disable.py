"""Disabling (or deleting) an SSO connection ends the logins made through it, with the
portal's tokens issued on them (as a deprovisioning ends a user's), audited and told to the
portal; logins through the organization's other connections stay."""

from __future__ import annotations

import json

from click.testing import CliRunner

from app.cli import cli
from app.cli.commands import register
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, saml_connection, start
from tests.sso.oidc_idp import SECRET_KEY
from tests.sso.portal import BASIC, AuthRequest, exchange, introspect, login_and_code
from tests.sso.test_rp_logout import _canaille_login

register()


def _data(value) -> dict:
    return value if isinstance(value, dict) else json.loads(value)


def _logins(db) -> dict[str, tuple[str | None, bool]]:
    return {r.connection_id: (r.revoked_reason, r.revoked_at is not None) for r in rows(
        db, "SELECT connection_id, revoked_reason, revoked_at FROM login_sessions")}


def _second_login(db, tenant, keys, sso_app) -> str:
    """The same user signed in through another connection of the organization, in another
    browser; that connection's id."""
    other = saml_connection(db, tenant, [keys.idp.cert_b64])
    browser = sso_app.test_client()
    request_id = start(browser, other)
    xml = forge.signed_response(claims_for(other, in_response_to=request_id), keys.idp)
    assert post_response(browser, other, forge.b64(xml)).status_code == 303
    return other.id


def test_disabling_a_connection_ends_its_logins_and_the_portals_tokens(db, tenant, keys, web,
                                                                      sso_app):
    """POST .../disable: the login through it is revoked (connection_disabled), its access
    and refresh tokens are dead, the browser must sign in again, session:revoke is audited
    and session.revoked queued (back-channel logout); the login through another connection
    of the same user lives on. Before, all of it stayed live until it expired."""
    user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    [login] = rows(db, "SELECT id, connection_id FROM login_sessions")
    other = _second_login(db, tenant, keys, sso_app)
    admin = make_key(db, "admin", tenant.org)

    resp = web.post(f"/api/v1/orgs/{tenant.org.id}/connections/{login.connection_id}/disable",
                    headers=admin.headers)
    assert resp.status_code == 200, resp.text
    assert resp.get_json()["enabled"] is False
    assert _logins(db) == {login.connection_id: ("connection_disabled", True),
                           other: (None, False)}
    assert introspect(web, tokens["access_token"]) == {"active": False}
    assert introspect(web, tokens["refresh_token"]) == {"active": False}
    refreshed = web.post("/sso/oidc/token", data={
        "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        headers={"Authorization": BASIC})
    assert refreshed.status_code == 400
    assert refreshed.get_json()["error"] == "invalid_grant"
    again = web.get(AuthRequest.new().url().replace("http://roster.test", ""))
    assert again.headers["Location"].startswith("/sso/login?next=")

    [revoked] = rows(db, "SELECT subject_id, data FROM audit_events "
                         "WHERE action = 'session:revoke'")
    assert revoked.subject_id == user.id
    assert _data(revoked.data) == {"session_ids": [login.id], "tokens_revoked": 2,
                                   "reason": "connection_disabled",
                                   "connection_id": login.connection_id}
    [update] = rows(db, "SELECT data FROM audit_events WHERE action = 'sso:connection:update'")
    assert _data(update.data) == {"changed": {"enabled": False}, "sessions_ended": 1}
    [event] = rows(db, "SELECT payload FROM outbox_events WHERE type = 'session.revoked'")
    assert _data(event.payload) == {"session_id": login.id, "user_id": user.id,
                                    "reason": "connection_disabled"}

    # Enabling it again restores nothing; disabling an already disabled one ends nothing.
    admin_url = f"/api/v1/orgs/{tenant.org.id}/connections/{login.connection_id}"
    assert web.post(f"{admin_url}/enable", headers=admin.headers).status_code == 200
    assert _logins(db)[login.connection_id] == ("connection_disabled", True)
    assert introspect(web, tokens["access_token"]) == {"active": False}


def test_the_cli_and_patch_disable_end_an_oidc_login_and_its_sealed_id_token(
        db, tenant, iam, web, database_url):
    """`roster connection set --disabled` ends the canaille login too, and drops the IdP's
    sealed ID token with it; a PATCH "enabled": false on another connection does the same
    through the API."""
    conn, tokens, _browser = _canaille_login(db, tenant, iam, web, "dis")
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
           "ROSTER_APP__SECRET_KEY": SECRET_KEY}
    result = CliRunner().invoke(cli, ["connection", "set", conn.id, "--disabled"], env=env)
    assert result.exit_code == 0, result.output
    assert [(r.revoked_reason, r.upstream_id_token) for r in rows(
        db, "SELECT revoked_reason, upstream_id_token FROM login_sessions")] == [
        ("connection_disabled", None)]
    assert introspect(web, tokens["access_token"]) == {"active": False}

    second, again, _browser = _canaille_login(db, tenant, iam, web, "dis2")
    admin = make_key(db, "admin", tenant.org)
    patched = web.patch(f"/api/v1/orgs/{tenant.org.id}/connections/{second.id}",
                        headers=admin.headers, json={"enabled": False})
    assert patched.status_code == 200, patched.text
    assert [r.revoked_reason for r in rows(db, "SELECT revoked_reason FROM login_sessions")] \
        == ["connection_disabled", "connection_disabled"]
    assert rows(db, "SELECT count(*) AS n FROM login_sessions "
                    "WHERE upstream_id_token IS NOT NULL")[0].n == 0
    assert introspect(web, again["refresh_token"]) == {"active": False}


def test_deleting_a_connection_ends_its_logins_as_disabling_does(db, tenant, keys, web,
                                                                sso_app):
    """DELETE .../connections/ID: the login through it is revoked (connection_deleted) with
    its access and refresh tokens, session:revoke is audited and session.revoked queued,
    sso:connection:delete records sessions_ended; the login through another connection
    lives on. Before, the deleted connection's logins and tokens stayed live."""
    user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    [login] = rows(db, "SELECT id, connection_id FROM login_sessions")
    other = _second_login(db, tenant, keys, sso_app)
    admin = make_key(db, "admin", tenant.org)

    resp = web.delete(f"/api/v1/orgs/{tenant.org.id}/connections/{login.connection_id}",
                      headers=admin.headers)
    assert resp.status_code == 204, resp.text
    assert _logins(db) == {login.connection_id: ("connection_deleted", True),
                           other: (None, False)}
    assert introspect(web, tokens["access_token"]) == {"active": False}
    assert introspect(web, tokens["refresh_token"]) == {"active": False}
    [revoked] = rows(db, "SELECT subject_id, data FROM audit_events "
                         "WHERE action = 'session:revoke'")
    assert revoked.subject_id == user.id
    assert _data(revoked.data) == {"session_ids": [login.id], "tokens_revoked": 2,
                                   "reason": "connection_deleted",
                                   "connection_id": login.connection_id}
    [deleted] = rows(db, "SELECT data FROM audit_events WHERE action = 'sso:connection:delete'")
    assert _data(deleted.data)["sessions_ended"] == 1
    [event] = rows(db, "SELECT payload FROM outbox_events WHERE type = 'session.revoked'")
    assert _data(event.payload) == {"session_id": login.id, "user_id": user.id,
                                    "reason": "connection_deleted"}


def test_the_cli_delete_ends_the_connections_logins(db, tenant, iam, web, database_url):
    """`roster connection delete CONN_ID --yes` ends the canaille login and drops the IdP's
    sealed ID token, as the CLI's disable does."""
    conn, tokens, _browser = _canaille_login(db, tenant, iam, web, "del")
    env = {"ROSTER_DATABASE__URL": database_url, "ROSTER_APP__ENV": "test",
           "ROSTER_APP__SECRET_KEY": SECRET_KEY}
    result = CliRunner().invoke(cli, ["connection", "delete", conn.id, "--yes"], env=env)
    assert result.exit_code == 0, result.output
    assert [(r.revoked_reason, r.upstream_id_token) for r in rows(
        db, "SELECT revoked_reason, upstream_id_token FROM login_sessions")] == [
        ("connection_deleted", None)]
    assert introspect(web, tokens["access_token"]) == {"active": False}
