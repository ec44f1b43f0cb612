"""OIDC attack corpus: every forged or misdirected login is refused, each with its trace reason.

Most tokens come from a hostile IdP on 127.0.0.1 that signs what the test asks; the PKCE
cases also run against the real canaille server (pytest-iam).
"""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc.jwk import ECKey, RSAKey

from app.sso.oidc_config import decrypt_client_secret
from tests.conftest import rows
from tests.sso.conftest import provision
from tests.sso.oidc_idp import (
    SECRET_KEY,
    callback_of,
    follow_to_roster,
    oidc_connection,
    refused_with,
    roster_path,
    start_login,
)


def _round_trip(web, conn):
    """Roster login -> hostile IdP (answers at once) -> Roster callback; Roster's answer."""
    return web.get(roster_path(follow_to_roster(start_login(web, conn))))


def _forged(db, tenant, hostile, web, forge):
    """Log in through the hostile IdP whose token endpoint answers ``forge(claims)``."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.token_for = forge
    return _round_trip(web, conn)


def test_honest_hostile_idp_login_succeeds(db, tenant, hostile, web):
    """Control case: the same IdP signing honestly logs alice in (the corpus is meaningful)."""
    resp = _forged(db, tenant, hostile, web, lambda claims: hostile.sign(claims))
    assert resp.status_code == 303, resp.text
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1


def test_alg_none_is_refused(db, tenant, hostile, web):
    """An unsigned ID token (alg none) never reaches key lookup."""
    resp = _forged(db, tenant, hostile, web, lambda claims: hostile.sign(claims, alg="none"))
    payload = refused_with(db, resp, "alg_not_allowed")
    assert payload["id_token"]["header"]["alg"] == "none"
    assert payload["id_token"]["claims"]["sub"] == "a***"


def test_alg_outside_the_connection_allow_list_is_refused(db, tenant, hostile, web):
    """A connection allowing only RS256 refuses a (validly signed) ES256 token."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile, algorithms=["RS256"])
    hostile.token_for = lambda claims: hostile.sign(claims, alg="ES256")
    refused_with(db, _round_trip(web, conn), "alg_not_allowed")


def test_hs256_signed_with_the_public_key_is_refused(db, tenant, hostile, web):
    """Key confusion: HS256 keyed with the RSA public key is not an allowed algorithm."""
    forged = hostile.sign({"sub": "x"}, alg="RS256").split(".")
    header = '{"alg":"HS256","kid":"rsa-1"}'
    forged[0] = base64.urlsafe_b64encode(header.encode()).rstrip(b"=").decode()
    resp = _forged(db, tenant, hostile, web, lambda claims: ".".join(forged))
    refused_with(db, resp, "alg_not_allowed")


def test_wrong_issuer_is_refused(db, tenant, hostile, web):
    """A token naming another issuer, even signed by the right key, is refused."""
    resp = _forged(db, tenant, hostile, web,
                   lambda claims: hostile.sign({**claims, "iss": "https://evil.example"}))
    payload = refused_with(db, resp, "wrong_issuer")
    assert payload["id_token"]["claims"]["iss"] == "https://evil.example"


def test_wrong_audience_is_refused(db, tenant, hostile, web):
    """A token minted for another client (aud) is refused."""
    resp = _forged(db, tenant, hostile, web,
                   lambda claims: hostile.sign({**claims, "aud": ["another-client"]}))
    refused_with(db, resp, "wrong_audience")


def test_foreign_authorized_party_is_refused(db, tenant, hostile, web):
    """Several audiences with azp naming another client: not ours to accept (§3.1.3.7)."""
    resp = _forged(db, tenant, hostile, web, lambda claims: hostile.sign(
        {**claims, "aud": [claims["aud"], "other"], "azp": "other"}))
    refused_with(db, resp, "wrong_audience")


def test_wrong_nonce_is_refused(db, tenant, hostile, web):
    """A token carrying another login's nonce (replayed ID token) is refused."""
    resp = _forged(db, tenant, hostile, web,
                   lambda claims: hostile.sign({**claims, "nonce": "someone-elses-nonce"}))
    refused_with(db, resp, "bad_nonce")


def test_missing_nonce_is_refused(db, tenant, hostile, web):
    """A token without a nonce is refused too."""
    resp = _forged(db, tenant, hostile, web, lambda claims: hostile.sign(
        {k: v for k, v in claims.items() if k != "nonce"}))
    refused_with(db, resp, "bad_nonce")


def test_expired_token_is_refused(db, tenant, hostile, web):
    """exp in the past beyond the clock skew is refused."""
    past = int(time.time()) - 3600
    resp = _forged(db, tenant, hostile, web, lambda claims: hostile.sign(
        {**claims, "iat": past - 300, "exp": past}))
    refused_with(db, resp, "token_expired")


def test_signature_by_a_key_outside_the_jwks_is_refused(db, tenant, hostile, web):
    """A rogue key reusing the published kid fails signature verification."""
    rogue = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})
    resp = _forged(db, tenant, hostile, web,
                   lambda claims: hostile.sign(claims, key=rogue))
    refused_with(db, resp, "bad_signature")


def test_unknown_key_id_is_refused_after_one_jwks_refresh(db, tenant, hostile, web):
    """A kid the IdP never published: the JWKS is re-read, then the login is refused."""
    rogue = RSAKey.generate_key(2048, parameters={"kid": "never-published"})
    resp = _forged(db, tenant, hostile, web,
                   lambda claims: hostile.sign(claims, key=rogue))
    refused_with(db, resp, "unknown_signing_key")


def test_tampered_claims_break_the_signature(db, tenant, hostile, web):
    """Changing the email of a signed token after signing is detected."""
    def tamper(claims):
        header, _, signature = hostile.sign(claims).split(".")
        body = base64.urlsafe_b64encode(json.dumps(
            {**claims, "email": "ceo@acme.com"}).encode()).rstrip(b"=").decode()
        return f"{header}.{body}.{signature}"
    refused_with(db, _forged(db, tenant, hostile, web, tamper), "bad_signature")


def test_a_response_naming_another_issuer_is_refused(db, tenant, hostile, web):
    """IdP mix-up (RFC 9207): an iss parameter that is not our IdP stops the login."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = follow_to_roster(start_login(web, conn))
    resp = web.get(f"{roster_path(callback)}&{urlencode({'iss': 'https://evil.example'})}")
    refused_with(db, resp, "wrong_issuer")
    assert hostile.token_requests == []


def test_an_idp_that_promises_iss_must_send_it(db, tenant, hostile, web, sso_app):
    """RFC 9207 §2.4: an IdP whose metadata says authorization_response_iss_parameter_supported
    must name itself in the response; one without iss did not come from it (mix-up), and is
    refused before its code is redeemed (the old code took it). With iss, it signs in."""
    provision(db, tenant)
    hostile.metadata = {"authorization_response_iss_parameter_supported": True}
    sso_app.extensions.pop("roster.oidc_providers", None)  # read this discovery document
    try:
        conn = oidc_connection(db, tenant, hostile)
        resp = web.get(roster_path(follow_to_roster(start_login(web, conn))))
        refused_with(db, resp, "wrong_issuer")
        assert hostile.token_requests == []
        hostile.response_params = {"iss": hostile.issuer}
        resp = web.get(roster_path(follow_to_roster(start_login(web, conn))))
        assert resp.status_code == 303, resp.text
        assert len(hostile.token_requests) == 1
    finally:
        sso_app.extensions.pop("roster.oidc_providers", None)  # other tests: no promise


@pytest.mark.parametrize("state", [None, "tampered"])
def test_callback_without_or_with_a_wrong_state_is_refused(db, tenant, hostile, web, state):
    """No state, or one this server never issued: refused before any code is redeemed."""
    conn = oidc_connection(db, tenant, hostile)
    callback = follow_to_roster(start_login(web, conn))
    query = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items() if k != "state"}
    if state:
        query["state"] = parse_qs(urlsplit(callback).query)["state"][0] + "x"
    resp = web.get(f"/sso/oidc/{conn.id}/callback?{urlencode(query)}")
    refused_with(db, resp, "bad_state")
    assert hostile.token_requests == []


def test_state_issued_to_another_browser_is_refused(db, tenant, hostile, sso_app, web):
    """Login CSRF: the attacker's own callback URL, opened in the victim's browser, fails."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    attacker_callback = follow_to_roster(start_login(sso_app.test_client(), conn))
    refused_with(db, web.get(roster_path(attacker_callback)), "bad_state")


def test_replayed_callback_is_refused(db, tenant, hostile, web):
    """The same callback URL twice: the second one is refused, one session only."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = follow_to_roster(start_login(web, conn))
    assert web.get(roster_path(callback)).status_code == 303
    resp = web.get(roster_path(callback))
    assert resp.status_code == 403
    [trace] = rows(db, "SELECT reason FROM sso_login_traces")
    assert trace.reason == "bad_state"
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1


def test_an_expired_login_attempt_is_refused(db, tenant, hostile, web):
    """A callback after sso.request_ttl_seconds: refused, the code never redeemed."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = follow_to_roster(start_login(web, conn))
    with db.engine.begin() as c:
        c.exec_driver_sql("UPDATE oidc_login_requests SET expires_at = created_at")
    refused_with(db, web.get(roster_path(callback)), "state_expired")
    assert hostile.token_requests == []


def test_a_code_the_idp_refuses_is_a_traced_refusal(db, tenant, hostile, web):
    """invalid_grant from the token endpoint (code already used or unknown) stops the login."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = follow_to_roster(start_login(web, conn))
    hostile.authorizations.clear()
    refused_with(db, web.get(roster_path(callback)), "token_exchange_failed")
    assert len(hostile.token_requests) == 1


def test_an_idp_error_quoting_the_request_keeps_no_secret_in_the_trace(db, tenant, hostile,
                                                                       web, sso_app,
                                                                       monkeypatch):
    """An IdP taking client_secret_post whose error quotes the token request back (parsed
    and form-encoded): the trace keeps its error, never the client secret, code or PKCE
    verifier (the trace was stored with all three)."""
    provision(db, tenant)
    secret = "s3cr+t/with=chars-0042"
    monkeypatch.setattr(hostile, "client", lambda cid: (f"roster-{cid[:8]}", secret))
    hostile.metadata = {"token_endpoint_auth_methods_supported": ["client_secret_post"]}
    monkeypatch.setattr(hostile, "token_response", lambda form: (401, {
        "error": "invalid_client",
        "error_description": f"refused {form} sent as {urlencode(form)}"}))
    sso_app.extensions.pop("roster.oidc_providers", None)  # read this discovery document
    try:
        conn = oidc_connection(db, tenant, hostile)
        callback = follow_to_roster(start_login(web, conn))
        refused_with(db, web.get(roster_path(callback)), "token_exchange_failed")
    finally:
        sso_app.extensions.pop("roster.oidc_providers", None)
    [trace] = rows(db, "SELECT detail FROM sso_login_traces")
    assert trace.detail.startswith("invalid_client: refused {")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    for value in (secret, "s3cr%2Bt%2Fwith%3Dchars-0042", code):
        assert value not in trace.detail
    # The quoted request is there, each secret of it masked (the verifier too).
    for name in ("client_secret", "code", "code_verifier"):
        assert f"'{name}': '[REDACTED]'" in trace.detail
        assert f"{name}=[REDACTED]" in trace.detail


def test_missing_pkce_verifier_is_refused_before_the_code_is_redeemed(db, tenant, hostile,
                                                                      web):
    """An attempt whose verifier is gone: Roster never redeems a code without PKCE."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = follow_to_roster(start_login(web, conn))
    with db.engine.begin() as c:
        c.exec_driver_sql("UPDATE oidc_login_requests SET code_verifier = NULL")
    refused_with(db, web.get(roster_path(callback)), "missing_pkce_verifier")
    assert hostile.token_requests == []


def test_the_real_idp_refuses_a_code_redeemed_without_the_verifier(db, tenant, iam, web):
    """An intercepted code is useless without Roster's verifier: canaille refuses it."""
    name = f"pkce{int(time.time() * 1e6)}"
    provision(db, tenant, f"{name}@acme.com")
    iam.user(name, f"{name}@acme.com", "correct horse")
    conn = oidc_connection(db, tenant, iam)
    callback = iam.sign_in(start_login(web, conn), name, "correct horse")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    [row] = rows(db, "SELECT oidc_client_id, oidc_client_secret_enc FROM sso_connections")
    # Even with the client's own credentials, the code needs the PKCE verifier.
    stolen = requests.post(f"{iam.issuer}/oauth/token", timeout=10, data={
        "grant_type": "authorization_code", "code": code,
        "redirect_uri": callback_of(conn.id)},
        auth=(row.oidc_client_id, decrypt_client_secret(SECRET_KEY,
                                                        row.oidc_client_secret_enc)))
    assert stolen.status_code == 400
    assert stolen.json()["error"] == "invalid_request"
    assert "code_verifier" in stolen.json()["error_description"]
    # Roster, holding the verifier, still completes the employee's login.
    assert web.get(roster_path(callback)).status_code == 303


def test_a_kid_shared_by_keys_of_two_types_selects_the_one_the_alg_needs(db, tenant, hostile,
                                                                          web):
    """RFC 7517 §4.5: keys of different ``kty`` may share a kid in one JWK Set. An EC key
    listed before the RSA key of the same kid made every RS256 login ``bad_signature``."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    ec = ECKey.generate_key("P-256", parameters={"kid": "shared"})
    rsa = RSAKey.generate_key(2048, parameters={"kid": "shared"})
    hostile.published = [ec, rsa]
    hostile.token_for = lambda claims: hostile.sign(claims, key=rsa)
    resp = _round_trip(web, conn)
    assert resp.status_code == 303, resp.text
    hostile.token_for = lambda claims: hostile.sign(claims, alg="ES256", key=ec)
    resp = _round_trip(web, conn)
    assert resp.status_code == 303, resp.text
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 2


def test_a_kid_shared_by_two_keys_of_one_type_verifies_with_the_signing_one(db, tenant,
                                                                           hostile, web):
    """Two RSA keys under one kid (an IdP rotating without a new kid): the token verifies
    with the key that signed it, and a key that signed none of them is still refused."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    old = RSAKey.generate_key(2048, parameters={"kid": "shared"})
    new = RSAKey.generate_key(2048, parameters={"kid": "shared"})
    hostile.published = [old, new]
    rogue = RSAKey.generate_key(2048, parameters={"kid": "shared"})
    hostile.token_for = lambda claims: hostile.sign(claims, key=rogue)
    refused_with(db, _round_trip(web, conn), "bad_signature")
    hostile.token_for = lambda claims: hostile.sign(claims, key=new)
    resp = _round_trip(web, conn)
    assert resp.status_code == 303, resp.text
