"""`roster connection` / `roster sso traces` end to end, and home-realm discovery pages."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from app.cli.commands import register
from app.db import utcnow
from app.models.sso import LoginTrace
from app.sso.redirects import is_allowed_redirect
from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import PORTAL, add_domain, post_response, saml_connection, start

register()


def _conn_id(output: str) -> str:
    return re.search(r"\(id ([0-9a-f-]{36})\)", output).group(1)


def test_connection_lifecycle_through_the_cli(run, tenant, keys, tmp_path, db):
    """create, import metadata with two certs, add and verify a domain, list."""
    out = run("connection", "create", "--org", "acme", "--name", "okta-saml").output
    conn_id = _conn_id(out)
    assert f"http://127.0.0.1:8000/sso/saml/{conn_id}/acs" in out
    metadata = tmp_path / "idp.xml"
    metadata.write_text(forge.idp_metadata([keys.idp.cert_b64, keys.idp_second.cert_b64]))
    out = run("connection", "metadata", "import", conn_id, "--file", str(metadata)).output
    assert "2 signing certificate(s)" in out
    stored = rows(db, "SELECT idp_entity_id, idp_sso_url, idp_certs FROM sso_connections")[0]
    certs = stored.idp_certs if isinstance(stored.idp_certs, list) else json.loads(
        stored.idp_certs)
    assert (stored.idp_entity_id, stored.idp_sso_url) == (forge.IDP_ENTITY, forge.IDP_SSO)
    assert certs == [keys.idp.cert_b64, keys.idp_second.cert_b64]
    run("connection", "domain", "add", conn_id, "Acme.COM")
    assert rows(db, "SELECT verified_at FROM sso_connection_domains")[0].verified_at is None
    run("connection", "domain", "verify", conn_id, "acme.com")
    assert rows(db, "SELECT verified_at FROM sso_connection_domains")[0].verified_at
    assert "okta-saml" in run("connection", "list", "--org", "acme").output
    actions = [a.action for a in rows(db, "SELECT action FROM audit_events "
                                          "WHERE action LIKE 'sso:%' ORDER BY seq")]
    assert actions == ["sso:connection:create", "sso:connection:metadata", "sso:domain:add",
                       "sso:domain:verify"]


def test_cli_disables_changes_and_deletes_a_connection(run, tenant, db):
    """set disables it and changes the policy, delete removes it; each step is audited."""
    conn_id = _conn_id(run("connection", "create", "--org", "acme", "--name", "c",
                           "--directory", tenant.directory.id).output)
    out = run("connection", "set", conn_id, "--disabled", "--policy", "jit").output
    assert out.strip() == "connection c: policy jit, match by email, disabled"
    assert rows(db, "SELECT enabled, login_policy FROM sso_connections")[0] in (
        (False, "jit"), (0, "jit"))
    run("connection", "delete", conn_id, "--yes")
    assert rows(db, "SELECT count(*) AS n FROM sso_connections")[0].n == 0
    assert "no SSO connection" in run("connection", "delete", conn_id, "--yes",
                                      ok=False).output
    actions = [a.action for a in rows(db, "SELECT action FROM audit_events "
                                          "WHERE action LIKE 'sso:%' ORDER BY seq")]
    assert actions == ["sso:connection:create", "sso:connection:update",
                       "sso:connection:delete"]


def test_cli_errors_are_one_line(run, tenant, tmp_path):
    """Bad metadata, a bad domain, an unknown connection, an http metadata URL."""
    conn_id = _conn_id(run("connection", "create", "--org", "acme", "--name", "c").output)
    bad = tmp_path / "bad.xml"
    bad.write_text("<nope/>")
    assert "needs an entityID" in run("connection", "metadata", "import", conn_id, "--file",
                                      str(bad), ok=False).output
    bad.write_text("<unclosed")
    assert "not usable" in run("connection", "metadata", "import", conn_id, "--file",
                               str(bad), ok=False).output
    assert "not a domain" in run("connection", "domain", "add", conn_id, "acme",
                                 ok=False).output
    assert "no SSO connection" in run("connection", "domain", "verify", "x" * 36, "acme.com",
                                      ok=False).output
    assert "must be https" in run("connection", "metadata", "import", conn_id, "--url",
                                  "http://idp.example/md", ok=False).output
    run("connection", "create", "--org", "acme", "--name", "c", ok=False)


def test_sso_traces_lists_failed_logins_with_their_correlation_id(run, db, tenant, keys, web):
    """A refused login shows up in `roster sso traces --org acme`, JSON with payload."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    resp = post_response(web, conn, forge.b64("<junk"))
    correlation = re.search(r"id=correlation-id>([^<]+)<", resp.text).group(1)
    table = run("sso", "traces", "--org", "acme").output
    assert correlation in table
    assert "malformed_response" in table
    # A Response that did not parse names no subject: shown as "-", as other tables do.
    [row] = [r for r in table.splitlines() if correlation in r]
    assert row.split()[3] == "-", row
    assert "None" not in row
    line = json.loads(run("sso", "traces", "--org", "acme", "--json").output.splitlines()[0])
    assert line["correlation_id"] == correlation
    assert line["payload"]["response"] == {"parsed": False}
    assert run("sso", "traces", "--org", "acme", "--reason", "replay").output.strip() == "(none)"


def test_traces_expire_after_the_retention(run, db, tenant, keys, web):
    """purge-traces deletes traces whose retention has passed, and only those."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    post_response(web, conn, forge.b64("<junk"))
    post_response(web, conn, forge.b64("<junk2"))
    with db.engine.begin() as c:  # written 31 days ago (sso.trace_retention_days: 30)
        c.execute(sa.update(LoginTrace).where(
            LoginTrace.id == sa.select(sa.func.min(LoginTrace.id)).scalar_subquery())
            .values(created_at=utcnow() - timedelta(days=31)))
    start(web, conn)
    start(web, conn)
    with db.engine.begin() as c:
        c.exec_driver_sql("UPDATE saml_requests SET expires_at = created_at "
                          "WHERE id = (SELECT min(id) FROM saml_requests)")
    out = run("sso", "purge-traces").output
    assert "1 trace(s) deleted" in out
    assert "1 expired SAML request/replay row(s) deleted" in out
    assert rows(db, "SELECT count(*) AS n FROM sso_login_traces")[0].n == 1
    assert rows(db, "SELECT count(*) AS n FROM saml_requests")[0].n == 1


def test_discovery_routes_a_verified_domain_to_its_connection(db, tenant, keys, web):
    """alice@acme.com goes straight to Acme's SAML login, keeping the return URL."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    add_domain(db, conn, "acme.com")
    resp = web.post("/sso/discover", data={"email": "Alice@ACME.com", "next": PORTAL})
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith(f"/sso/saml/{conn.id}/login?next=https")


def test_discovery_shows_a_chooser_for_several_connections(db, tenant, keys, web):
    """Two connections serving the domain: the user picks one."""
    first = saml_connection(db, tenant, [keys.idp.cert_b64])
    second = saml_connection(db, tenant, [keys.idp.cert_b64])
    add_domain(db, first, "acme.com")
    add_domain(db, second, "acme.com")
    resp = web.post("/sso/discover", data={"email": "alice@acme.com"})
    assert resp.status_code == 200
    assert f"/sso/saml/{first.id}/login" in resp.text
    assert f"/sso/saml/{second.id}/login" in resp.text


def test_discovery_explains_an_unknown_or_unverified_domain(db, tenant, keys, web):
    """Unknown and unverified domains get the same clear page, never a redirect."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    add_domain(db, conn, "acme.com", verified=False)
    for email in ("bob@unknown.example", "alice@acme.com", "not-an-email"):
        resp = web.post("/sso/discover", data={"email": email})
        assert resp.status_code == 404
        assert "No sign-in is set up for this email domain" in resp.text


def test_discovery_refuses_a_return_url_outside_the_allow_list(db, tenant, keys, web):
    """The login page and discovery both refuse an open-redirect target."""
    assert web.get("/sso/login", query_string={"next": "https://evil.example/"}
                   ).status_code == 400
    resp = web.post("/sso/discover", data={"email": "a@acme.com", "next": "https://evil.example"})
    assert resp.status_code == 400
    assert web.get("/sso/login", query_string={"next": PORTAL}).status_code == 200


@pytest.mark.parametrize(("url", "allowed"), [
    ("https://portal.test/app/%2e%2e/admin", False), ("https://portal.test/app/.%2E/admin", False),
    ("https://portal.test/app/..;/admin", False), ("https://portal.test/app/../admin", False),
    ("https://portal.test/app/%2E/x", False), ("https://portal.test/app/a..b/c", True),
    ("https://portal.test/app/orders?x=..", True), ("https://portal.test/app", True),
])
def test_a_return_url_cannot_climb_out_of_its_allowed_path(url, allowed):
    """Dot segments, also percent-encoded or with a parameter, resolve above the allowed
    path in a browser (RFC 3986 §5.2.4): refused; dots inside a name or the query are not
    segments."""
    assert is_allowed_redirect(url, ["https://portal.test/app"]) is allowed
