"""SAML single logout with SimpleSAMLphp: SP-initiated and IdP-initiated, signed both ways."""

from __future__ import annotations

from tests.conftest import rows
from tests.sso.conftest import provision, ssp_connection
from tests.sso.test_simplesamlphp import _login


def _revoked(db) -> list[tuple[str | None, str | None]]:
    return [(r.revoked_reason, r.revoked_at is not None and "yes")
            for r in rows(db, "SELECT revoked_reason, revoked_at FROM login_sessions")]


def test_sp_initiated_logout_ends_our_session_and_the_idps(db, tenant, keys, web, ssp):
    """/logout, confirmed, revokes the session; the IdP answers with a LogoutResponse."""
    provision(db, tenant)
    conn = ssp_connection(db, tenant, ssp, keys)
    browser, page = _login(web, conn)
    assert page.status == 303
    asked = browser.go("GET", f"http://roster.test/sso/saml/{conn.id}/logout")
    assert "Do you want to sign out?" in asked.text  # a GET alone ends nothing
    assert _revoked(db) == [(None, False)]
    done = browser.submit(asked)
    assert done.status == 200, done.text[:1000]
    assert "signed out" in done.text
    assert _revoked(db) == [("saml_logout", "yes")]
    events = rows(db, "SELECT type FROM outbox_events WHERE type = 'session.revoked'")
    assert len(events) == 1
    assert browser.last_post("SAMLResponse")  # the login went through the IdP
    again = browser.go("GET", f"http://roster.test/sso/saml/{conn.id}/login")
    assert 'name="password"' in again.text  # the IdP session is gone too


def test_idp_initiated_logout_revokes_the_browsers_session(db, tenant, keys, web, ssp):
    """The IdP's LogoutRequest reaches us through the browser; we revoke and answer."""
    provision(db, tenant)
    conn = ssp_connection(db, tenant, ssp, keys)
    browser, page = _login(web, conn)
    assert page.status == 303
    done = browser.go("GET", f"{ssp.base}/saml2/idp/SingleLogoutService.php?ReturnTo="
                      f"{ssp.base}/module.php/core/welcome")
    assert done.status == 200, done.text[:1000]
    assert _revoked(db) == [("saml_idp_logout", "yes")]


def test_unsigned_logout_request_is_refused(db, tenant, keys, web, ssp):
    """A LogoutRequest without a signature does not end anything."""
    provision(db, tenant)
    conn = ssp_connection(db, tenant, ssp, keys)
    _browser, page = _login(web, conn)
    assert page.status == 303
    resp = web.get(f"/sso/saml/{conn.id}/slo", query_string={"SAMLRequest": "fZBBa8Mw"})
    assert resp.status_code == 403
    assert _revoked(db) == [(None, False)]
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "slo_invalid"
