"""SSO operations: the worker purges expired SSO rows, reverse-proxy headers are trusted
only when configured, and refusals record the endpoint's protocol."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner

from app import create_app
from app.cli import cli
from app.cli.commands import register
from app.db import new_id, utcnow
from app.models.sso import LoginTrace, OidcLoginRequest, SamlRequest, SeenAssertion
from app.settings import SettingsError
from app.sso.maintenance import PeriodicPurge
from tests.conftest import app_overrides, rows
from tests.scim.support import PATCH_OP, Scim
from tests.sso.conftest import saml_connection

register()


def _expiring_rows(db, tenant, conn) -> None:
    """One expired and one live row of each kind the purge handles."""
    now = utcnow()
    with db.transaction() as s:
        for days, reason in ((31, "old"), (29, "fresh")):  # sso.trace_retention_days: 30
            s.add(LoginTrace(id=new_id(), organization_id=tenant.org.id,
                             connection_id=conn.id, protocol="saml", reason=reason,
                             detail="", payload={}, created_at=now - timedelta(days=days)))
        for minutes, key in ((-5, "old"), (5, "fresh")):
            expires = now + timedelta(minutes=minutes)
            s.add(SamlRequest(id=f"_req-{key}", connection_id=conn.id, expires_at=expires))
            s.add(SeenAssertion(connection_id=conn.id, assertion_id=f"_a-{key}",
                                expires_at=expires))
            s.add(OidcLoginRequest(id=key.ljust(64, "0"), connection_id=conn.id, nonce="n",
                                   code_verifier="v", expires_at=expires))


def _left(db) -> dict[str, list[str]]:
    return {"traces": [r.reason for r in rows(db, "SELECT reason FROM sso_login_traces")],
            "requests": [r.id for r in rows(db, "SELECT id FROM saml_requests")],
            "seen": [r.assertion_id for r in rows(
                db, "SELECT assertion_id FROM saml_seen_assertions")],
            "oidc": [r.id[:5] for r in rows(db, "SELECT id FROM oidc_login_requests")]}


def test_worker_purges_expired_traces_requests_and_replay_cache(database_url, db, tenant,
                                                               keys):
    """`roster worker --until-idle` deletes what expired and keeps what is still live."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    _expiring_rows(db, tenant, conn)
    result = CliRunner().invoke(cli, ["worker", "--until-idle"], catch_exceptions=False,
                                env={"ROSTER_DATABASE__URL": database_url,
                                     "ROSTER_APP__ENV": "test"})
    assert result.exit_code == 0, result.output
    assert _left(db) == {"traces": ["fresh"], "requests": ["_req-fresh"],
                         "seen": ["_a-fresh"], "oidc": ["fresh"]}


def test_periodic_purge_runs_at_most_once_per_interval(db, tenant, keys):
    """The worker's purge is throttled: a second call within the interval does nothing."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    _expiring_rows(db, tenant, conn)
    purge = PeriodicPurge(db, interval=3600, trace_retention_days=30)
    assert purge.maybe_run() == {"traces": 1, "saml": 2, "oidc_attempts": 1,
                                 "authorization_codes": 0, "issued_tokens": 0,
                                 "login_sessions": 0, "backchannel_logouts": 0}
    with db.transaction() as s:
        s.add(LoginTrace(id=new_id(), organization_id=tenant.org.id, protocol="saml",
                         reason="later", detail="", payload={},
                         created_at=utcnow() - timedelta(days=31)))
    assert purge.maybe_run() is None
    assert sorted(_left(db)["traces"]) == ["fresh", "later"]


def test_purge_removes_ended_sessions_expired_tokens_and_sent_logouts(db, tenant):
    """Every token request, portal login and refresh added a row for good. The purge keeps
    what may still be used or asked about: a token until a day after it expired, a login
    session until 30 days after it ended, a back-channel logout until 30 days after it was
    queued, whatever its status."""
    from app.models.sso import BackchannelLogout, IssuedToken, LoginSession
    from app.sso.maintenance import purge_expired_rows
    from tests.lifecycle.support import add_user

    user_id = add_user(db, tenant, "purged")
    now, org = utcnow(), tenant.org.id
    with db.transaction() as s:
        old_login = LoginSession(organization_id=org, user_id=user_id,
                                 revoked_at=now - timedelta(days=31))
        recent_login = LoginSession(organization_id=org, user_id=user_id,
                                    revoked_at=now - timedelta(days=1))
        s.add_all([old_login, recent_login])
        s.flush()
        for name, session_id, expires in (
                ("expired", None, now - timedelta(days=2)),
                ("just-expired", None, now - timedelta(hours=1)),
                ("live", recent_login.id, now + timedelta(hours=1)),
                ("of-old-login", old_login.id, now + timedelta(hours=1))):
            s.add(IssuedToken(organization_id=org, user_id=user_id, session_id=session_id,
                              client_id="portal", token_type="access", token_hash=name,
                              expires_at=expires))
        for status, age in (("sent", 31), ("failed", 31), ("pending", 31), ("sent", 1)):
            s.add(BackchannelLogout(outbox_event_id=new_id(), session_id=old_login.id,
                                    user_id=user_id, client_id="portal", status=status,
                                    created_at=now - timedelta(days=age)))
    with db.transaction() as s:
        counts = purge_expired_rows(s, trace_retention_days=30)
    assert (counts["issued_tokens"], counts["login_sessions"],
            counts["backchannel_logouts"]) == (1, 1, 3)
    assert sorted(r.token_hash for r in rows(db, "SELECT token_hash FROM issued_tokens")) \
        == ["just-expired", "live"]  # the old login's token went with it
    assert [r.id for r in rows(db, "SELECT id FROM login_sessions")] == [recent_login.id]
    # A pending one that old goes too (app/sso/maintenance.py: nothing may ever send it).
    assert [r.status for r in rows(db, "SELECT status FROM oidc_backchannel_logouts")] \
        == ["sent"]


@pytest.fixture(scope="module")
def proxied(database_url, db):
    """Two apps on the suite database: one trusting one proxy hop, one trusting none."""
    apps = {}
    for hops in (0, 1):
        overrides = app_overrides(database_url)
        # A secret key, so a SAML login sets its binding cookie (Secure over https only).
        overrides["app"] = {**overrides["app"], "trusted_proxies": hops, "secret_key": "t" * 40}
        app = create_app(overrides)
        app.extensions["roster.db"].dispose()
        app.extensions["roster.db"] = db
        apps[hops] = app
    return apps


FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "id.example.com",
             "X-Forwarded-For": "203.0.113.7"}


PEER = {"REMOTE_ADDR": "10.0.0.5"}  # the proxy, or a client sending the headers itself


def _seen_through(app, db, tenant, keys) -> tuple[bool, str]:
    """What the app took from a request with FORWARDED headers: whether the SAML binding
    cookie is Secure (the scheme it saw), and the client IP a deprovisioning records."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    client = app.test_client()
    login = client.get(f"/sso/saml/{conn.id}/login", headers=FORWARDED,
                       base_url="http://10.0.0.5:8000", environ_base=PEER)
    assert login.status_code == 303, login.text
    [cookie] = login.headers.getlist("Set-Cookie")
    scim = Scim(client, tenant)
    user_id = scim.create_user("proxied@acme.example")["id"]
    off = scim.patch(f"/Users/{user_id}", {"schemas": [PATCH_OP], "Operations": [
        {"op": "replace", "path": "active", "value": False}]}, headers=FORWARDED,
        base_url="http://10.0.0.5:8000", environ_base=PEER)
    assert off.status_code == 200, off.get_json()
    [record] = rows(db, "SELECT source_ip FROM deprovision_records WHERE user_id = :i",
                    i=user_id)
    return "; Secure" in cookie, record.source_ip


def test_trusted_proxy_headers_change_what_the_app_sees(proxied, db, tenant, keys):
    """With trusted_proxies = 1 the forwarded scheme and client count: the binding cookie is
    Secure (SameSite=None needs it) and the deprovisioning record names the client."""
    assert _seen_through(proxied[1], db, tenant, keys) == (True, "203.0.113.7")


def test_proxy_headers_are_ignored_by_default(proxied, db, tenant, keys):
    """With trusted_proxies = 0 (the default) a client cannot claim another scheme or
    address: the record names the peer that sent the request."""
    assert _seen_through(proxied[0], db, tenant, keys) == (False, "10.0.0.5")


@pytest.mark.parametrize("hops", [0, 1])
def test_openapi_server_url_is_the_base_url_whatever_the_host(proxied, hops):
    """The OpenAPI servers URL is app.base_url, never a Host or X-Forwarded-Host header
    (OpenAPI 3.1 §4.8.5): the description echoed any Host a client sent."""
    client = proxied[hops].test_client()
    for headers in (FORWARDED, {"Host": "evil.example"}):
        spec = client.get("/api/v1/openapi.json", headers=headers,
                          base_url="http://10.0.0.5:8000").get_json()
        assert spec["servers"] == [{"url": "http://roster.test"}]


def test_oidc_provider_sees_https_only_through_a_trusted_proxy(sso_app, proxied):
    """authlib refuses plain http; behind a trusted TLS proxy the forwarded https counts."""
    # Only the transport matters here, so the token request itself is deliberately empty.
    plain = sso_app.test_client().post("/sso/oidc/introspect", data={"token": "x"},
                                       headers=FORWARDED, base_url="http://10.0.0.5")
    assert plain.get_json()["error"] == "insecure_transport"
    overrides = dict(sso_app.config["ROSTER"])
    overrides["app"] = {**overrides["app"], "trusted_proxies": 1}
    behind = create_app(overrides)
    behind.extensions["roster.db"].dispose()
    behind.extensions["roster.db"] = proxied[1].extensions["roster.db"]
    resp = behind.test_client().post("/sso/oidc/introspect", data={"token": "x"},
                                     headers=FORWARDED, base_url="http://10.0.0.5")
    assert resp.get_json()["error"] == "invalid_client"


def test_settings_refuse_a_negative_proxy_count(database_url):
    """trusted_proxies must be 0..10; anything else stops the app at start."""
    overrides = app_overrides(database_url)
    overrides["app"] = {**overrides["app"], "trusted_proxies": -1}
    with pytest.raises(SettingsError) as refused:
        create_app(overrides)
    assert refused.value.problems == ["app.trusted_proxies must be between 0 and 10"]


def test_unknown_oidc_connection_is_traced_as_oidc(db, web):
    """A refusal at an OIDC endpoint with no such connection records protocol oidc."""
    resp = web.get(f"/sso/oidc/{new_id()}/login")
    assert resp.status_code == 403
    assert [(t.reason, t.protocol) for t in rows(
        db, "SELECT reason, protocol FROM sso_login_traces")] == [("unknown_connection", "oidc")]


def test_unknown_saml_connection_is_traced_as_saml(db, web):
    """The same refusal at a SAML endpoint records protocol saml."""
    resp = web.post(f"/sso/saml/{new_id()}/acs", data={"SAMLResponse": "eA=="})
    assert resp.status_code == 403
    assert [(t.reason, t.protocol) for t in rows(
        db, "SELECT reason, protocol FROM sso_login_traces")] == [("unknown_connection", "saml")]


def test_an_unexpected_error_under_sso_is_a_page_or_the_providers_oauth_json(
        database_url, db, tenant, tmp_path, caplog):
    """Key files that vanish after start (an unmounted secret) fail the requests that read
    them: a browser gets a plain page quoting the request id, the provider's JSON endpoints
    OAuth's server_error; each error is logged with its request id, nothing leaks. They
    were the app's generic JSON 500, which a browser shows as raw text."""
    from tests.sso.keys import make_key

    sp, op = make_key(tmp_path, "sp"), make_key(tmp_path, "op")
    overrides = app_overrides(database_url)
    overrides["sso"] = {"sp_key_file": str(sp.key_file), "sp_cert_file": str(sp.cert_file)}
    overrides["oidc_provider"] = {"signing_key_file": str(op.key_file)}
    app = create_app(overrides)
    app.extensions["roster.db"].dispose()
    app.extensions["roster.db"] = db
    conn = saml_connection(db, tenant, [])
    for path in (sp.key_file, sp.cert_file, op.key_file):
        path.unlink()
    client = app.test_client()
    page = client.get(f"/sso/saml/{conn.id}/metadata", headers={"X-Request-ID": "req-page"})
    assert (page.status_code, page.mimetype) == (500, "text/html")
    assert '<code id=correlation-id>req-page</code>' in page.text
    assert "Traceback" not in page.text
    assert str(sp.key_file) not in page.text
    for method, path in (("GET", "/sso/oidc/.well-known/openid-configuration"),
                         ("GET", "/sso/oidc/jwks"), ("POST", "/sso/oidc/token")):
        answer = client.open(path, method=method, headers={"X-Request-ID": "req-json"})
        assert (answer.status_code, answer.mimetype) == (500, "application/json"), path
        assert answer.get_json()["error"] == "server_error"
        assert answer.get_json()["request_id"] == "req-json"
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert [r.request_id for r in logged] == ["req-page"] + ["req-json"] * 3
    assert all(r.exc_info for r in logged)
