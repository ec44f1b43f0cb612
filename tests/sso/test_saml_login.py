"""SAML SP login flows with a scripted IdP: SP- and IdP-initiated, policies, keys, redirects."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import (
    PORTAL,
    claims_for,
    post_response,
    provision,
    saml_connection,
    start,
)


def _login_ok(resp, target: str = PORTAL + "home") -> None:
    assert resp.status_code == 303, resp.text
    assert resp.headers["Location"] == target


def test_sp_initiated_login_opens_a_session_and_returns_to_the_portal(db, tenant, keys, web):
    """A signed assertion answering our AuthnRequest logs the provisioned user in."""
    user = provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    request_id = start(web, conn)
    xml = forge.signed_response(claims_for(conn, in_response_to=request_id), keys.idp)
    _login_ok(post_response(web, conn, forge.b64(xml)))
    sessions = rows(db, "SELECT user_id, connection_id FROM login_sessions")
    assert [(s.user_id, s.connection_id) for s in sessions] == [(user.id, conn.id)]
    audit = rows(db, "SELECT action, subject_id FROM audit_events WHERE action = 'sso:login'")
    assert [(a.action, a.subject_id) for a in audit] == [("sso:login", user.id)]
    used = rows(db, "SELECT used_at FROM saml_requests WHERE id = :i", i=request_id)
    assert used[0].used_at is not None
    assert rows(db, "SELECT count(*) AS n FROM saml_seen_assertions")[0].n == 1


def test_the_authn_request_targets_the_idp_and_names_our_acs(db, tenant, keys, web):
    """The redirect goes to the IdP's SSO URL carrying an AuthnRequest with our ACS."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    resp = web.get(f"/sso/saml/{conn.id}/login", query_string={"next": PORTAL})
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == forge.IDP_SSO
    params = parse_qs(location.query)
    assert PORTAL not in params["RelayState"][0]
    assert len(params["RelayState"][0].encode()) <= 80
    assert "Signature" not in params


def test_signed_authn_requests_carry_a_signature_when_enabled(db, tenant, keys, web):
    """With sign_requests the redirect binding carries SigAlg and Signature (Bindings §3.4.4.1)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], sign_requests=True)
    resp = web.get(f"/sso/saml/{conn.id}/login")
    params = parse_qs(urlsplit(resp.headers["Location"]).query)
    assert params["SigAlg"] == ["http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"]
    assert params["Signature"][0]


def test_idp_initiated_login_is_accepted_only_when_enabled(db, tenant, keys, web):
    """An unsolicited Response (no InResponseTo) logs in only on connections that allow it."""
    provision(db, tenant)
    allowed = saml_connection(db, tenant, [keys.idp.cert_b64], allow_idp_initiated=True)
    xml = forge.signed_response(claims_for(allowed), keys.idp)
    _login_ok(post_response(web, allowed, forge.b64(xml), relay_state=PORTAL + "home"))
    closed = saml_connection(db, tenant, [keys.idp.cert_b64])
    resp = post_response(web, closed, forge.b64(forge.signed_response(claims_for(closed),
                                                                       keys.idp)))
    assert resp.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "unsolicited_response"


def test_relay_state_outside_the_allow_list_is_not_followed(db, tenant, keys, web):
    """IdP-initiated RelayState pointing elsewhere never becomes a redirect."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], allow_idp_initiated=True)
    xml = forge.signed_response(claims_for(conn), keys.idp)
    resp = post_response(web, conn, forge.b64(xml), relay_state="https://evil.example/")
    assert resp.status_code == 200
    assert "Location" not in resp.headers
    assert "signed in" in resp.text


def test_login_start_refuses_a_next_url_outside_the_allow_list(db, tenant, keys, web):
    """No AuthnRequest is issued for a return URL that is not a portal URL."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    for bad in ("https://evil.example/", "https://portal.test.evil.example/",
                "//evil.example/", "javascript:alert(1)", "https://portal.test:8443/"):
        resp = web.get(f"/sso/saml/{conn.id}/login", query_string={"next": bad})
        assert resp.status_code == 400, bad
    assert rows(db, "SELECT count(*) AS n FROM saml_requests")[0].n == 0


def test_any_configured_idp_certificate_is_trusted_during_rollover(db, tenant, keys, web):
    """Two IdP signing certs are valid at once: an assertion signed by either logs in."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64, keys.idp_second.cert_b64])
    for key in (keys.idp, keys.idp_second):
        request_id = start(web, conn)
        xml = forge.signed_response(claims_for(conn, in_response_to=request_id), key)
        _login_ok(post_response(web, conn, forge.b64(xml)))
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 2


def test_encrypted_assertions_decrypt_with_the_current_or_the_next_sp_key(db, tenant, keys, web):
    """EncryptedAssertion to either SP certificate is accepted (SP key rollover)."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    for sp_key in (keys.sp, keys.sp_next):
        request_id = start(web, conn)
        xml = forge.signed_response(claims_for(conn, in_response_to=request_id), keys.idp)
        encrypted = forge.encrypt_assertion(xml, sp_key.cert_pem)
        assert "EncryptedAssertion" in encrypted
        assert "alice@acme.com" not in encrypted
        _login_ok(post_response(web, conn, forge.b64(encrypted)))


def test_an_assertion_encrypted_to_an_unknown_key_is_refused(db, tenant, keys, web):
    """Encryption to a certificate that is not ours cannot be decrypted: refused and traced."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    request_id = start(web, conn)
    xml = forge.signed_response(claims_for(conn, in_response_to=request_id), keys.idp)
    resp = post_response(web, conn, forge.b64(forge.encrypt_assertion(xml,
                                                                       keys.rogue.cert_pem)))
    assert resp.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "decryption_failed"


def test_sp_metadata_publishes_entity_acs_and_both_sp_certificates(db, tenant, keys, web):
    """Each connection's metadata lives at its entity id and lists current and next certs."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    resp = web.get(f"/sso/saml/{conn.id}/metadata")
    assert resp.status_code == 200
    assert resp.mimetype == "application/samlmetadata+xml"
    body = resp.text
    assert f'entityID="http://roster.test/sso/saml/{conn.id}/metadata"' in body
    assert f'Location="http://roster.test/sso/saml/{conn.id}/acs"' in body
    assert keys.sp.cert_b64[:60] in body.replace("\n", "")
    assert keys.sp_next.cert_b64[:60] in body.replace("\n", "")
    assert 'WantAssertionsSigned="true"' in body
    assert web.get("/sso/saml/nope/metadata").status_code == 404
