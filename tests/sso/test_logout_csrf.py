"""Logout CSRF: no page on another site can end an employee's sign-in by sending the browser
to a logout URL. SAML /logout asks first (a POST with a token); /slo acts only on a signed
message meant for this browser; the OIDC logged-out return needs this browser's state."""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from onelogin.saml2.auth import OneLogin_Saml2_Auth

from app.sso.web import sp_urls
from tests.conftest import rows
from tests.sso import forge
from tests.sso.browser import Browser
from tests.sso.conftest import (
    PORTAL,
    claims_for,
    post_response,
    provision,
    saml_connection,
    ssp_connection,
    start,
)
from tests.sso.portal import AuthRequest


def _revoked(db) -> list[str | None]:
    return [r.revoked_reason for r in rows(db, "SELECT revoked_reason FROM login_sessions")]


ROSTER = "http://roster.test"


def _still_signed_in(web, base_url: str = "http://localhost") -> bool:
    """The portal's next authorization gets a code at once (the browser's login is bound)."""
    resp = web.get(AuthRequest.new().url().replace(ROSTER, ""), base_url=base_url)
    return resp.status_code == 302


def _forged_login(db, tenant, keys, web):
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn)), keys.idp)
    assert post_response(web, conn, forge.b64(xml)).status_code == 303
    return conn


def test_a_get_of_saml_logout_only_asks_and_a_confirmed_post_ends_the_login(db, tenant, keys,
                                                                           web):
    """A cross-site GET (an <img>, a link) shows the confirmation page and ends nothing; a
    POST without this browser's token neither; the confirmed POST does. The old code
    revoked the login on the GET."""
    conn = _forged_login(db, tenant, keys, web)
    shown = web.get(f"/sso/saml/{conn.id}/logout")
    assert shown.status_code == 200
    assert "Do you want to sign out?" in shown.text
    assert f'action="/sso/saml/{conn.id}/logout"' in shown.text
    # No other site may frame it and put its button under a decoy (clickjacking).
    assert "frame-ancestors 'none'" in shown.headers["Content-Security-Policy"]
    assert shown.headers["X-Frame-Options"] == "DENY"
    assert _revoked(db) == [None]
    forged = web.post(f"/sso/saml/{conn.id}/logout", data={"confirm": "guess"})
    assert "Do you want to sign out?" in forged.text
    assert _revoked(db) == [None]
    # Non-ASCII is compared like any wrong token (hmac.compare_digest raised on it: a 500).
    accented = web.post(f"/sso/saml/{conn.id}/logout", data={"confirm": "gu\u00e9ss"})
    assert accented.status_code == 200
    assert "Do you want to sign out?" in accented.text
    assert _revoked(db) == [None]
    assert _still_signed_in(web)
    token = accented.text.split('name=confirm value="', 1)[1].split('"', 1)[0]
    done = web.post(f"/sso/saml/{conn.id}/logout", data={"confirm": token})
    assert done.status_code == 200
    assert "signed out" in done.text
    assert _revoked(db) == ["saml_logout"]
    assert not _still_signed_in(web)


def test_the_oidc_logged_out_return_without_this_browsers_state_changes_nothing(
        db, tenant, keys, web):
    """/sso/oidc/<id>/logged-out is where an IdP returns after a logout Roster started. Any
    page could send a browser there: the old code cleared its cookie (signed out) whatever
    the state; now only the state this browser was given finishes anything."""
    _forged_login(db, tenant, keys, web)
    for query in ("", "?state=forged"):
        page = web.get(f"/sso/oidc/some-connection/logged-out{query}")
        assert page.status_code == 200
        assert "Location" not in page.headers
    assert _still_signed_in(web)
    assert _revoked(db) == [None]


def _ssp_login(web, conn, user: str) -> Browser:
    browser = Browser(web)
    form = browser.go("GET", f"http://roster.test/sso/saml/{conn.id}/login?next={PORTAL}")
    assert browser.submit(form, username=user, password=f"{user}-pass").status == 303
    return browser


def _to_our_slo(browser: Browser, url: str, conn) -> str:
    """Follow the IdP's redirects by hand; the SLO URL it sends the browser to (not sent)."""
    for _ in range(10):
        resp = browser.http.get(url, allow_redirects=False, timeout=15)
        assert resp.status_code in (301, 302, 303), resp.text[:500]
        url = urljoin(url, resp.headers["Location"])
        if urlsplit(url).path == f"/sso/saml/{conn.id}/slo":
            return url
    raise AssertionError("the IdP never sent a logout message to Roster")


def _alice_and_bob(db, tenant, keys, web, sso_app, ssp, monkeypatch):
    """Alice signed in (SimpleSAMLphp) in a browser of her own, bob in ``web``: the
    connection, alice's browser and bob's IdP session."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # http://roster.test below
    provision(db, tenant)
    provision(db, tenant, "bob@acme.com")
    conn = ssp_connection(db, tenant, ssp, keys)
    victim_web = sso_app.test_client()
    _ssp_login(victim_web, conn, "alice")
    return conn, victim_web, _ssp_login(web, conn, "bob")


def test_a_signed_logout_response_meant_for_another_browser_is_refused(
        db, tenant, keys, web, sso_app, ssp, monkeypatch):
    """An employee captures the IdP's signed LogoutResponse of their own logout and gets a
    colleague's browser to open it. It answers no LogoutRequest of that browser: refused
    (traced), the colleague stays signed in. The old code checked no InResponseTo without a
    pending request and cleared the browser's cookie."""
    conn, victim_web, attacker = _alice_and_bob(db, tenant, keys, web, sso_app, ssp,
                                                monkeypatch)
    page = attacker.go("GET", f"http://roster.test/sso/saml/{conn.id}/logout")
    _method, action, fields = page.form()
    resp = web.post(urlsplit(action).path, data=fields, base_url=ROSTER)
    assert resp.status_code == 303
    captured = _to_our_slo(attacker, resp.headers["Location"], conn)
    assert "SAMLResponse=" in captured
    hit = victim_web.get(captured.replace(ROSTER, ""), base_url=ROSTER)
    assert hit.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces ORDER BY created_at")[-1].reason \
        == "slo_unsolicited"
    assert _still_signed_in(victim_web, ROSTER)


def test_a_signed_logout_request_for_another_subject_leaves_the_browser_signed_in(
        db, tenant, keys, web, sso_app, ssp, monkeypatch):
    """The IdP's signed LogoutRequest for bob, opened in alice's browser: Roster answers the
    IdP but neither revokes nor forgets alice's login (the old code cleared her cookie)."""
    conn, victim_web, attacker = _alice_and_bob(db, tenant, keys, web, sso_app, ssp,
                                                monkeypatch)
    captured = _to_our_slo(attacker, f"{ssp.base}/saml2/idp/SingleLogoutService.php?"
                           f"ReturnTo={ssp.base}/module.php/core/welcome", conn)
    assert "SAMLRequest=" in captured
    hit = victim_web.get(captured.replace(ROSTER, ""), base_url=ROSTER)
    assert hit.status_code == 303  # the LogoutResponse back to the IdP
    assert _still_signed_in(victim_web, ROSTER)
    assert _revoked(db) == [None, None]


IDP_SLO = "https://idp.forge.test/slo"
EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def _idp_logout_request(sso_app, keys, conn, name_id: str) -> str:
    """The path and query of a LogoutRequest the IdP signs (HTTP-Redirect binding) with the
    NameID encrypted to Roster's certificate (python3-saml playing the IdP)."""
    with sso_app.test_request_context():
        urls = sp_urls(conn.id)
    settings = {
        "strict": True,
        "sp": {"entityId": forge.IDP_ENTITY, "NameIDFormat": EMAIL,
               "assertionConsumerService": {"url": "https://idp.forge.test/acs"},
               "singleLogoutService": {"url": IDP_SLO},
               "x509cert": keys.idp.cert_pem, "privateKey": keys.idp.key_pem},
        "idp": {"entityId": urls.entity_id, "singleSignOnService": {"url": urls.acs},
                "singleLogoutService": {"url": urls.slo}, "x509cert": keys.sp.cert_pem},
        "security": {"nameIdEncrypted": True, "logoutRequestSigned": True,
                     "signatureAlgorithm": "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                     "digestAlgorithm": "http://www.w3.org/2001/04/xmlenc#sha256"},
    }
    auth = OneLogin_Saml2_Auth({"https": "on", "http_host": "idp.forge.test",
                                "script_name": "/", "get_data": {}, "post_data": {}}, settings)
    url = urlsplit(auth.logout(name_id=name_id, name_id_format=EMAIL))
    return f"{url.path}?{url.query}"


def test_an_encrypted_name_id_logs_out_only_its_own_subject(db, tenant, keys, web, sso_app):
    """A LogoutRequest with <saml:EncryptedID> (SAML Core §3.7.1) was read as naming no one
    and so as this browser's: another employee's signed logout signed this browser out, and
    the subject's own left its login session (and the portal's tokens) live."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], idp_slo_url=IDP_SLO)
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn)), keys.idp)
    assert post_response(web, conn, forge.b64(xml)).status_code == 303
    assert web.get(_idp_logout_request(sso_app, keys, conn, "bob@acme.com")).status_code == 303
    assert _still_signed_in(web)
    assert _revoked(db) == [None]
    own = claims_for(conn).name_id
    assert web.get(_idp_logout_request(sso_app, keys, conn, own)).status_code == 303
    assert not _still_signed_in(web)
    assert _revoked(db) == ["saml_idp_logout"]
