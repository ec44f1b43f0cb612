"""OIDC Core §3.1.2.1 prompt and max_age at Roster's authorization endpoint: a new login at
the customer's IdP (ForceAuthn, prompt=login) before the code, its auth_time in the ID
token; prompt=none combinations; select_account and consent."""

from __future__ import annotations

import time
from datetime import timedelta
from types import SimpleNamespace
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from sqlalchemy import select

from app.models.sso import LoginSession
from tests.conftest import rows
from tests.sso import forge
from tests.sso.browser import Browser
from tests.sso.conftest import (
    PORTAL_CALLBACK,
    add_domain,
    claims_for,
    post_response,
    provision,
    saml_connection,
    ssp_connection,
)
from tests.sso.oidc_idp import oidc_connection, roster_path, start_login
from tests.sso.portal import AuthRequest, code_from, exchange, login_and_code, verify_id_token


def _authorize(web, req: AuthRequest, **extra: str):
    return web.get(req.url(**extra).replace("http://roster.test", ""))


def _age_logins(db, hours: int = 2) -> None:
    """Make the browser's login look ``hours`` old (as if signed in this morning)."""
    with db.transaction() as s:
        for login in s.scalars(select(LoginSession)):
            login.created_at -= timedelta(hours=hours)
            if login.authenticated_at is not None:
                login.authenticated_at -= timedelta(hours=hours)


def _error_at_portal(resp) -> dict[str, list[str]]:
    assert resp.status_code in (302, 303), resp.text
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == PORTAL_CALLBACK
    return parse_qs(location.query)


def _authn_request(web, login_path: str) -> tuple[str, str]:
    """Follow Roster's SAML login redirect: (AuthnRequest id, its XML)."""
    resp = web.get(login_path)
    assert resp.status_code == 303, resp.text
    params = parse_qs(urlsplit(resp.headers["Location"]).query)
    xml = OneLogin_Saml2_Utils.decode_base64_and_inflate(params["SAMLRequest"][0])
    text = xml.decode() if isinstance(xml, bytes) else xml
    return text.split(' ID="', 1)[1].split('"', 1)[0], text


def _saml_login_again(db, keys, web, login_path: str, authn_age=timedelta(0), *,
                      forced: bool = True):
    """Answer the AuthnRequest, which must have ForceAuthn="true", with an assertion signed
    by the IdP saying it authenticated the user ``authn_age`` ago."""
    [row] = rows(db, "SELECT id FROM sso_connections")
    conn = SimpleNamespace(id=row.id)
    request_id, xml = _authn_request(web, login_path)
    assert ('ForceAuthn="true"' in xml) is forced
    claims = claims_for(conn, in_response_to=request_id, authn_age=authn_age)
    return post_response(web, conn, forge.b64(forge.signed_response(claims, keys.idp)))


def _tokens(web, req: AuthRequest, resp) -> dict:
    assert resp.status_code == 302, resp.text
    body = exchange(web, code_from(resp.headers["Location"], req.state), req.verifier)
    return verify_id_token(web, body.get_json()["id_token"], req.nonce)


def test_prompt_login_signs_in_again_at_the_idp_and_reports_the_new_auth_time(db, tenant,
                                                                             keys, web):
    """A browser signed in two hours ago: prompt=login sends it to its connection's login
    with ForceAuthn="true", and the code that follows names the new login (its sid) and
    its auth_time. The old code issued a code at once, with the old auth_time."""
    login_and_code(db, tenant, keys, web)
    _age_logins(db)
    [conn] = rows(db, "SELECT id FROM sso_connections")
    req, asked = AuthRequest.new(), int(time.time())
    resp = _authorize(web, req, prompt="login")
    assert resp.status_code == 303, resp.text
    target = urlsplit(resp.headers["Location"])
    assert target.path == f"/sso/saml/{conn.id}/login"
    assert parse_qs(target.query) == {"next": [req.url(prompt="login")], "reauth": ["1"]}
    back = _saml_login_again(db, keys, web, resp.headers["Location"])
    assert back.headers["Location"] == req.url(prompt="login")
    claims = _tokens(web, req, _authorize(web, req, prompt="login"))  # no second round
    [fresh] = rows(db, "SELECT id FROM login_sessions ORDER BY created_at DESC LIMIT 1")
    assert claims["sid"] == fresh.id
    assert claims["auth_time"] >= asked


def test_max_age_exceeded_signs_in_again_and_the_id_token_has_auth_time(db, tenant, keys,
                                                                        web):
    """max_age=3600 and a login two hours old: a new, forced login first; the ID token
    carries auth_time (OIDC Core §2, MUST with max_age)."""
    login_and_code(db, tenant, keys, web)
    _age_logins(db)
    req = AuthRequest.new()
    resp = _authorize(web, req, max_age="3600")
    assert resp.status_code == 303
    assert "reauth=1" in resp.headers["Location"]
    _saml_login_again(db, keys, web, resp.headers["Location"])
    claims = _tokens(web, req, _authorize(web, req, max_age="3600"))
    assert time.time() - claims["auth_time"] < 60


def test_a_login_younger_than_max_age_gets_a_code_with_its_auth_time(db, tenant, keys, web):
    """max_age not exceeded: no new login; the ID token says when the login happened."""
    login_and_code(db, tenant, keys, web)
    _age_logins(db, hours=1)
    req = AuthRequest.new()
    claims = _tokens(web, req, _authorize(web, req, max_age="10800"))
    assert abs(claims["auth_time"] - (time.time() - 3600)) < 60


def test_max_age_zero_is_prompt_login_even_for_a_login_made_just_now(db, tenant, keys, web):
    """OIDC Core §3.1.2.1: "max_age=0 is equivalent to prompt=login". A login a second old
    still signs in again (ForceAuthn); the old code gave a code at once, since it allowed
    every max_age 10 seconds of clock difference. The new login then gets its code."""
    login_and_code(db, tenant, keys, web)
    req = AuthRequest.new()
    resp = _authorize(web, req, max_age="0")
    assert resp.status_code == 303, resp.headers.get("Location")
    assert "reauth=1" in resp.headers["Location"]
    _saml_login_again(db, keys, web, resp.headers["Location"])
    claims = _tokens(web, req, _authorize(web, req, max_age="0"))
    [fresh] = rows(db, "SELECT id FROM login_sessions ORDER BY created_at DESC LIMIT 1")
    assert claims["sid"] == fresh.id
    req = AuthRequest.new()  # with prompt=none, a login is needed: login_required
    query = _error_at_portal(_authorize(web, req, max_age="0", prompt="none"))
    assert (query["error"], query["state"]) == (["login_required"], [req.state])


def test_prompt_none_when_max_age_needs_a_login_is_login_required(db, tenant, keys, web):
    """prompt=none must not show a login (§3.1.2.6): an old login and max_age=60 go back
    to the portal with login_required; the old code issued a code."""
    login_and_code(db, tenant, keys, web)
    _age_logins(db)
    req = AuthRequest.new()
    query = _error_at_portal(_authorize(web, req, prompt="none", max_age="60"))
    assert (query["error"], query["state"]) == (["login_required"], [req.state])
    assert "code" not in query


def test_prompt_none_with_another_value_is_invalid_request(db, tenant, keys, web, sso_app):
    """§3.1.2.1: none with any other value is an error, signed in or not."""
    login_and_code(db, tenant, keys, web)
    for client in (web, sso_app.test_client()):
        req = AuthRequest.new()
        query = _error_at_portal(_authorize(client, req, prompt="none login"))
        assert (query["error"], query["state"]) == (["invalid_request"], [req.state])


def test_a_max_age_that_is_not_a_number_is_invalid_request(db, tenant, keys, web):
    """max_age is a non-negative integer of seconds; anything else goes back as an error."""
    login_and_code(db, tenant, keys, web)
    for value in ("abc", "-5", "1.5"):
        req = AuthRequest.new()
        query = _error_at_portal(_authorize(web, req, max_age=value))
        assert query["error"] == ["invalid_request"], value


def test_an_invalid_request_is_answered_before_the_employee_signs_in(db, tenant, keys, web,
                                                                     sso_app):
    """OIDC Core §3.1.2.2: the request is validated first. A browser without a Roster login
    gets a bad max_age or a missing nonce back at the portal at once, and an unknown
    client an error page, instead of a login page and the error only after signing in."""
    browser = sso_app.test_client()
    for extra in ({"max_age": "abc"}, {"max_age": "-1"}, {"nonce": ""}):
        req = AuthRequest.new()
        query = _error_at_portal(_authorize(browser, req, **extra))
        assert (query["error"], query["state"]) == (["invalid_request"], [req.state]), extra
    resp = _authorize(browser, AuthRequest.new(), client_id="nobody")
    assert resp.status_code == 400
    assert "invalid" in resp.text
    resp = _authorize(browser, AuthRequest.new(), max_age="60")  # a valid one: sign in
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/sso/login?next=")


def test_select_account_asks_for_the_work_email_and_consent_needs_no_screen(db, tenant,
                                                                           keys, web):
    """select_account: home-realm discovery before any code (another account may be
    chosen); consent: Roster has no consent screen, the code is issued."""
    login_and_code(db, tenant, keys, web)
    req = AuthRequest.new()
    resp = _authorize(web, req, prompt="select_account")
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/sso/login?next=")
    assert "reauth" not in resp.headers["Location"]
    other = AuthRequest.new()
    _tokens(web, other, _authorize(web, other, prompt="consent"))


def test_prompt_login_without_a_login_forces_the_idp_through_discovery(db, tenant, keys,
                                                                       web):
    """Not signed in: discovery carries reauth on to the connection, whose AuthnRequest
    has ForceAuthn; after that one login the code is issued (no loop)."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    add_domain(db, conn, "acme.com")
    req = AuthRequest.new()
    resp = _authorize(web, req, prompt="login")
    assert resp.headers["Location"].startswith("/sso/login?next=")
    form = web.get(resp.headers["Location"])
    assert 'name=reauth value=1' in form.text
    found = web.post("/sso/discover", data={"email": "alice@acme.com",
                                            "next": req.url(prompt="login"), "reauth": "1"})
    assert found.status_code == 303
    _saml_login_again(db, keys, web, found.headers["Location"])
    _tokens(web, req, _authorize(web, req, prompt="login"))


def test_prompt_login_makes_simplesamlphp_ask_for_the_password_again(db, tenant, keys, web,
                                                                     ssp, monkeypatch):
    """With a live session at SimpleSAMLphp, prompt=login still shows its password form
    (ForceAuthn honoured by a real IdP); the ID token then names the new login."""
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    provision(db, tenant)
    conn = ssp_connection(db, tenant, ssp, keys)
    first = AuthRequest.new()
    browser = Browser(web)
    form = browser.go("GET", f"http://roster.test/sso/saml/{conn.id}/login?next="
                      + requests.utils.quote(first.url(), safe=""))
    issued = browser.submit(form, username="alice", password="alice-pass")
    code_from(issued.headers["Location"], first.state)
    # Without ForceAuthn the IdP's session signs alice in again without a word.
    silent = browser.go("GET", f"http://roster.test/sso/saml/{conn.id}/login")
    assert "You are signed in" in silent.text
    req = AuthRequest.new()
    again = browser.go("GET", req.url(prompt="login"))
    assert 'name="password"' in again.text, again.text[:500]
    done = browser.submit(again, username="alice", password="alice-pass")
    body = exchange(web, code_from(done.headers["Location"], req.state), req.verifier)
    claims = verify_id_token(web, body.get_json()["id_token"], req.nonce)
    [fresh] = rows(db, "SELECT id FROM login_sessions ORDER BY created_at DESC LIMIT 1")
    assert claims["sid"] == fresh.id
    assert len(rows(db, "SELECT id FROM login_sessions")) == 3


def test_prompt_login_makes_canaille_ask_for_the_password_again(db, tenant, iam, web):
    """An OIDC connection: Roster sends prompt=login to canaille, which asks for the
    password again although its session is live; then the portal gets its code."""
    name = f"prl{tenant.org.id[:8]}"
    provision(db, tenant, f"{name}@acme.com")
    iam.user(name, f"{name}@acme.com", "correct horse")
    conn = oidc_connection(db, tenant, iam)
    browser = requests.Session()
    callback = iam.sign_in(start_login(web, conn), name, "correct horse", browser=browser)
    assert web.get(roster_path(callback)).status_code == 303
    req = AuthRequest.new()
    resp = _authorize(web, req, prompt="login")
    assert resp.headers["Location"].startswith(f"/sso/oidc/{conn.id}/login?")
    upstream = web.get(resp.headers["Location"])
    assert upstream.status_code == 303
    assert parse_qs(urlsplit(upstream.headers["Location"]).query)["prompt"] == ["login"]
    shown = browser.get(upstream.headers["Location"], timeout=10)
    assert 'name="password"' in shown.text
    callback = iam.sign_in(upstream.headers["Location"], name, "correct horse",
                           browser=browser)
    back = web.get(roster_path(callback))
    assert back.headers["Location"] == req.url(prompt="login")
    claims = _tokens(web, req, _authorize(web, req, prompt="login"))
    [fresh] = rows(db, "SELECT id FROM login_sessions ORDER BY created_at DESC LIMIT 1")
    assert claims["sid"] == fresh.id


@pytest.mark.parametrize("extra", [{"prompt": "login"}, {"max_age": "600"}])
def test_a_login_the_idp_did_not_make_afresh_is_not_fresh(db, tenant, keys, web, extra):
    """The browser drops reauth=1 (or the IdP ignores ForceAuthn) and the IdP signs the user
    in from its own session of two hours ago (AuthnInstant). That new Roster login used to
    satisfy prompt=login and max_age, with a made-up fresh auth_time; now the portal gets
    login_required, and no code."""
    login_and_code(db, tenant, keys, web)
    _age_logins(db)
    req = AuthRequest.new()
    resp = _authorize(web, req, **extra)
    assert "reauth=1" in resp.headers["Location"]
    unforced = resp.headers["Location"].replace("&reauth=1", "").replace("reauth=1&", "")
    back = _saml_login_again(db, keys, web, unforced, timedelta(hours=2), forced=False)
    assert back.status_code == 303
    query = _error_at_portal(_authorize(web, req, **extra))
    assert query["error"] == ["login_required"]
    assert "did not authenticate the user again" in query["error_description"][0]
    assert "code" not in query


def test_max_age_without_a_login_asks_the_idp_for_a_new_authentication(db, tenant, keys,
                                                                        web):
    """No Roster login yet and max_age=600: the IdP may still hold an old session of its
    own, so it is asked to authenticate anew (reauth=1 through discovery); the old code
    forced only for max_age=0."""
    provision(db, tenant)
    saml_connection(db, tenant, [keys.idp.cert_b64])
    req = AuthRequest.new()
    resp = _authorize(web, req, max_age="600")
    assert resp.status_code == 303
    assert "reauth=1" in resp.headers["Location"]


def _signed(key, **claims) -> str:
    """An ID token signed with ``key`` (Roster's own signing key, or another)."""
    jwk = RSAKey.import_key(key.key_pem)
    now = int(time.time())
    body = {"iss": "http://roster.test/sso/oidc", "aud": ["portal"], "iat": now,
            "exp": now + 300, **claims}
    return jwt.encode({"alg": "RS256", "kid": jwk.thumbprint()}, body, jwk)


def test_id_token_hint_naming_another_user_is_login_required(db, tenant, keys, web):
    """OIDC Core §3.1.2.1: with an id_token_hint, a code only for the user it names ("if
    the End-User identified by the ID Token is logged in ... otherwise, it SHOULD return
    an error, such as login_required"); the old code ignored the hint and gave a code for
    whoever the browser was signed in as. Expired hints are fine (a hint, not a
    credential); one Roster did not sign is invalid_request."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    mine = exchange(web, code, req.verifier).get_json()["id_token"]
    sub = verify_id_token(web, mine, req.nonce)["sub"]
    for hint in (mine, _signed(keys.op, sub=sub, exp=int(time.time()) - 3600)):
        req = AuthRequest.new()
        _tokens(web, req, _authorize(web, req, prompt="none", id_token_hint=hint))
    for prompt_value in ("none", ""):
        req = AuthRequest.new()
        query = _error_at_portal(_authorize(web, req, prompt=prompt_value,
                                            id_token_hint=_signed(keys.op, sub="someone")))
        assert (query["error"], query["state"]) == (["login_required"], [req.state])
        assert "code" not in query
    req = AuthRequest.new()
    query = _error_at_portal(_authorize(web, req, id_token_hint=_signed(keys.rogue, sub=sub)))
    assert query["error"] == ["invalid_request"]
    assert rows(db, "SELECT count(*) AS n FROM oauth_authorization_codes")[0].n == 3
