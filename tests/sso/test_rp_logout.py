"""OpenID Connect RP-Initiated Logout 1.0: the portal ends a Roster login (id_token_hint,
registered post_logout_redirect_uri, state), its tokens die and the portal hears it by
back-channel; then the customer's IdP logs out too (canaille end_session, SimpleSAMLphp SLO)."""

from __future__ import annotations

import base64
import dataclasses
import json
from urllib.parse import parse_qs, urlencode, urlsplit

import requests
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from app.sso.backchannel import run_once
from app.sso.provider_views import provider_config
from tests.conftest import rows
from tests.sso import forge
from tests.sso.browser import Browser
from tests.sso.conftest import (
    PORTAL_LOGGED_OUT,
    claims_for,
    post_response,
    provision,
    saml_connection,
    ssp_connection,
    start,
)
from tests.sso.oidc_idp import oidc_connection, roster_path, start_login
from tests.sso.portal import (
    AuthRequest,
    code_from,
    exchange,
    introspect,
    login_and_code,
    verify_id_token,
)
from tests.sso.receiver import logout_receiver

END = "/sso/oidc/end_session"


def _tokens(db, tenant, keys, web) -> tuple[object, dict]:
    """A SAML login by the portal, its code redeemed: (user, token response)."""
    user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    assert "id_token" in tokens, tokens
    return user, tokens


def _sessions(db) -> list[tuple[str | None, bool]]:
    return [(r.revoked_reason, r.revoked_at is not None)
            for r in rows(db, "SELECT revoked_reason, revoked_at FROM login_sessions")]


def _data(value) -> dict:
    return value if isinstance(value, dict) else json.loads(value)


def test_discovery_publishes_the_end_session_endpoint(web):
    """OIDC RPIL §2.1: end_session_endpoint is in the provider metadata."""
    doc = web.get("/sso/oidc/.well-known/openid-configuration").get_json()
    assert doc["end_session_endpoint"] == "http://roster.test/sso/oidc/end_session"


def test_portal_logout_revokes_session_and_tokens_and_returns_with_state(db, tenant, keys,
                                                                        web, sso_app):
    """A valid id_token_hint ends the login, kills its tokens, queues the back-channel
    logout, is audited, and sends the browser to the registered URI with the state."""
    user, tokens = _tokens(db, tenant, keys, web)
    resp = web.get(END, query_string={"id_token_hint": tokens["id_token"],
                                      "post_logout_redirect_uri": PORTAL_LOGGED_OUT,
                                      "state": "st-123"})
    assert resp.status_code == 303, resp.text
    assert resp.headers["Location"] == f"{PORTAL_LOGGED_OUT}?state=st-123"
    assert _sessions(db) == [("oidc_rp_logout", True)]
    assert introspect(web, tokens["access_token"]) == {"active": False}
    assert introspect(web, tokens["refresh_token"]) == {"active": False}
    [event] = rows(db, "SELECT payload FROM outbox_events WHERE type = 'session.revoked'")
    assert _data(event.payload)["reason"] == "oidc_rp_logout"
    # The usual back-channel path tells the portal's back end (other tabs, other nodes).
    with logout_receiver() as (url, received):
        config = dataclasses.replace(provider_config(sso_app), backchannel_logout_uri=url)
        assert run_once(db, config, timeout=5)["sent"] == 1
    sid = jwt.decode(received[0], KeySet.import_key_set(web.get("/sso/oidc/jwks").get_json()),
                     algorithms=["RS256"]).claims["sid"]
    assert sid == rows(db, "SELECT id FROM login_sessions")[0].id
    [logout] = rows(db, "SELECT subject_id, data FROM audit_events WHERE action = 'sso:logout'")
    assert logout.subject_id == user.id
    assert _data(logout.data)["client_id"] == "portal"
    assert _data(logout.data)["id_token_hint"] is True
    assert rows(db, "SELECT count(*) AS n FROM audit_events WHERE action = 'session:revoke'"
                )[0].n == 1
    # The browser's Roster session is gone too: the portal's next authorize asks for a login.
    again = web.get(AuthRequest.new().url().replace("http://roster.test", ""))
    assert again.headers["Location"].startswith("/sso/login?next=")


def test_hint_alone_ends_the_login_it_names_even_without_the_cookie(db, tenant, keys, web,
                                                                   sso_app):
    """The portal's back end may send a fresh browser: the hint's sid is what ends."""
    _user, tokens = _tokens(db, tenant, keys, web)
    fresh = sso_app.test_client()
    resp = fresh.get(END, query_string={"id_token_hint": tokens["id_token"]})
    assert resp.status_code == 200
    assert "signed out" in resp.text
    assert _sessions(db) == [("oidc_rp_logout", True)]


def test_unregistered_post_logout_redirect_uri_is_never_followed(db, tenant, keys, web):
    """No open redirect: a URI not registered exactly (other host, longer path) is ignored."""
    _user, tokens = _tokens(db, tenant, keys, web)
    for target in ("https://evil.example/logged-out", f"{PORTAL_LOGGED_OUT}/../x",
                   f"{PORTAL_LOGGED_OUT}?next=https://evil.example"):
        resp = web.get(END, query_string={"id_token_hint": tokens["id_token"],
                                          "post_logout_redirect_uri": target})
        assert resp.status_code == 200, target
        assert "Location" not in resp.headers
    assert _sessions(db) == [("oidc_rp_logout", True)]


def test_a_forged_or_mismatched_hint_ends_nothing_and_redirects_nowhere(db, tenant, keys,
                                                                       web):
    """RPIL §4: a hint not signed by our key, or a client_id not in its aud, is an error."""
    _user, tokens = _tokens(db, tenant, keys, web)
    claims = verify_id_token(web, tokens["id_token"], _nonce_of(tokens["id_token"]))
    header = {"alg": "RS256", "kid": claims.pop("header")["kid"]}
    forged = jwt.encode(header, claims, RSAKey.import_key(keys.rogue.key_pem),
                        algorithms=["RS256"])
    for params in ({"id_token_hint": forged, "post_logout_redirect_uri": PORTAL_LOGGED_OUT},
                   {"id_token_hint": tokens["id_token"], "client_id": "someone-else",
                    "post_logout_redirect_uri": PORTAL_LOGGED_OUT},
                   {"id_token_hint": "not.a.jwt"}):
        resp = web.get(END, query_string=params)
        assert resp.status_code == 400, resp.text
        assert "Location" not in resp.headers
    assert _sessions(db) == [(None, False)]
    assert introspect(web, tokens["access_token"])["active"] is True


def test_a_hint_whose_crit_header_is_no_array_of_names_is_a_plain_400(db, tenant, keys,
                                                                       web):
    """RFC 7515 §4.1.11: ``crit`` is an array of names. One that is a number or holds one
    made joserfc raise a TypeError before any signature was checked: any page could make a
    500 of the logout with an unsigned hint. Now an invalid request (RPIL §4)."""
    _user, tokens = _tokens(db, tenant, keys, web)
    claims = verify_id_token(web, tokens["id_token"], _nonce_of(tokens["id_token"]))
    kid = claims.pop("header")["kid"]
    body = tokens["id_token"].split(".")[1]
    for crit in ([1], 7, [None]):
        head = base64.urlsafe_b64encode(json.dumps(
            {"alg": "RS256", "kid": kid, "crit": crit}).encode()).rstrip(b"=").decode()
        resp = web.get(END, query_string={"id_token_hint": f"{head}.{body}.AAAA",
                                          "post_logout_redirect_uri": PORTAL_LOGGED_OUT})
        assert resp.status_code == 400, resp.text
        assert "Location" not in resp.headers
        assert "not a valid JWS" in resp.text
    assert _sessions(db) == [(None, False)]
    assert introspect(web, tokens["access_token"])["active"] is True


def _nonce_of(id_token: str) -> str:
    body = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))["nonce"]


def test_without_a_hint_the_user_confirms_and_nothing_redirects(db, tenant, keys, web):
    """RPIL §6: no hint, no silent logout; a confirmed POST ends the browser's own login."""
    _tokens(db, tenant, keys, web)
    shown = web.get(END, query_string={"post_logout_redirect_uri": PORTAL_LOGGED_OUT})
    assert shown.status_code == 200
    assert "Do you want to sign out?" in shown.text
    assert _sessions(db) == [(None, False)]
    forged = web.post(END, data={"confirm": "guess"})
    assert "Do you want to sign out?" in forged.text
    assert _sessions(db) == [(None, False)]
    token = forged.text.split('name=confirm value="', 1)[1].split('"', 1)[0]
    done = web.post(END, data={"confirm": token,
                               "post_logout_redirect_uri": PORTAL_LOGGED_OUT})
    assert done.status_code == 200
    assert "Location" not in done.headers
    assert _sessions(db) == [("oidc_rp_logout", True)]


def _portal_login_via_oidc(db, tenant, idp, web, **login) -> tuple[object, dict, object]:
    """The portal asks Roster, Roster asks the customer's OIDC IdP: (conn, tokens, browser)."""
    conn = oidc_connection(db, tenant, idp)
    req = AuthRequest.new()
    authorize_url = start_login(web, conn, next_url=req.url())
    browser = requests.Session()
    if login:
        callback = idp.sign_in(authorize_url, login["name"], login["password"],
                               browser=browser)
    else:
        callback = browser.get(authorize_url, allow_redirects=False, timeout=10
                               ).headers["Location"]
    back = web.get(roster_path(callback))
    assert back.status_code == 303, back.text
    assert back.headers["Location"] == req.url()
    issued = web.get(req.url().replace("http://roster.test", ""))
    code = code_from(issued.headers["Location"], req.state)
    return conn, exchange(web, code, req.verifier).get_json(), browser


def _canaille_login(db, tenant, iam, web, prefix: str) -> tuple[object, dict, object]:
    """A user provisioned in Roster and known to canaille, signed in to the portal."""
    name = f"{prefix}{tenant.org.id[:8]}"
    provision(db, tenant, f"{name}@acme.com")
    iam.user(name, f"{name}@acme.com", "correct horse")
    return _portal_login_via_oidc(db, tenant, iam, web, name=name, password="correct horse")


def test_logout_continues_at_canaille_and_comes_back_to_the_portal(db, tenant, iam, web):
    """Full round trip: Roster ends its login, sends the browser to canaille's
    end_session_endpoint with canaille's ID token, canaille logs out and returns to Roster,
    Roster returns to the portal with the portal's state."""
    conn, tokens, browser = _canaille_login(db, tenant, iam, web, "rplo")
    resp = web.get(END, query_string={"id_token_hint": tokens["id_token"],
                                      "post_logout_redirect_uri": PORTAL_LOGGED_OUT,
                                      "state": "portal-state"})
    assert resp.status_code == 303, resp.text
    assert _sessions(db) == [("oidc_rp_logout", True)]
    upstream = urlsplit(resp.headers["Location"])
    discovery = requests.get(iam.discovery_url, timeout=10).json()
    assert f"{upstream.scheme}://{upstream.netloc}{upstream.path}" == \
        discovery["end_session_endpoint"]
    query = {k: v[0] for k, v in parse_qs(upstream.query).items()}
    assert set(query) == {"id_token_hint", "client_id", "post_logout_redirect_uri", "state"}
    assert query["post_logout_redirect_uri"] == \
        f"http://roster.test/sso/oidc/{conn.id}/logged-out"
    assert query["client_id"] == conn.oidc_client_id
    assert query["id_token_hint"] != tokens["id_token"]  # canaille's own token, not ours
    at_idp = browser.get(resp.headers["Location"], allow_redirects=False, timeout=10)
    assert at_idp.status_code == 302, at_idp.text[:500]
    assert at_idp.headers["Location"].startswith(query["post_logout_redirect_uri"])
    assert parse_qs(urlsplit(at_idp.headers["Location"]).query)["state"] == [query["state"]]
    home = web.get(roster_path(at_idp.headers["Location"]))
    assert home.status_code == 303
    assert home.headers["Location"] == f"{PORTAL_LOGGED_OUT}?state=portal-state"
    # canaille's session is gone: signing in again asks for the login.
    again = browser.get(start_login(web, conn), allow_redirects=True, timeout=10)
    assert 'name="login"' in again.text


def test_a_wrong_state_from_the_idp_does_not_lead_on(db, tenant, iam, web):
    """The way back from the IdP needs the state this browser was given."""
    conn, tokens, _browser = _canaille_login(db, tenant, iam, web, "rpls")
    resp = web.get(END, query_string={"id_token_hint": tokens["id_token"],
                                      "post_logout_redirect_uri": PORTAL_LOGGED_OUT})
    assert resp.status_code == 303
    for state in ("forged", "for\u00e9d"):  # non-ASCII: compared, not a 500
        back = web.get(f"/sso/oidc/{conn.id}/logged-out?{urlencode({'state': state})}")
        assert back.status_code == 200
        assert "Location" not in back.headers


def test_an_idp_without_end_session_goes_straight_back_to_the_portal(db, tenant, hostile,
                                                                     web):
    """No end_session_endpoint in the IdP's discovery: Roster's logout is the whole logout."""
    provision(db, tenant, "alice@acme.com")
    _conn, tokens, _browser = _portal_login_via_oidc(db, tenant, hostile, web)
    resp = web.get(END, query_string={"id_token_hint": tokens["id_token"],
                                      "post_logout_redirect_uri": PORTAL_LOGGED_OUT,
                                      "state": "s"})
    assert resp.headers["Location"] == f"{PORTAL_LOGGED_OUT}?state=s"
    assert _sessions(db) == [("oidc_rp_logout", True)]


def test_saml_login_logs_out_at_simplesamlphp_then_returns_to_the_portal(
        db, tenant, keys, web, ssp, monkeypatch):
    """For a SAML login the portal's logout runs SAML SLO with the IdP, then comes back."""
    # The scripted browser calls Roster as http://roster.test (authlib wants https there).
    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")
    provision(db, tenant)
    conn = ssp_connection(db, tenant, ssp, keys)
    req = AuthRequest.new()
    browser = Browser(web)
    form = browser.go("GET", f"http://roster.test/sso/saml/{conn.id}/login?"
                      f"{urlencode({'next': req.url()})}")
    issued = browser.submit(form, username="alice", password="alice-pass")
    tokens = exchange(web, code_from(issued.headers["Location"], req.state),
                      req.verifier).get_json()
    done = browser.go("GET", f"http://roster.test{END}?" + urlencode({
        "id_token_hint": tokens["id_token"], "post_logout_redirect_uri": PORTAL_LOGGED_OUT,
        "state": "after-slo"}))
    assert done.status == 303, done.text[:1000]
    assert done.headers["Location"] == f"{PORTAL_LOGGED_OUT}?state=after-slo"
    assert _sessions(db) == [("oidc_rp_logout", True)]
    again = browser.go("GET", f"http://roster.test/sso/saml/{conn.id}/login")
    assert 'name="password"' in again.text  # the IdP session is gone too


def test_a_hint_naming_someone_else_asks_before_ending_this_browsers_login(db, tenant, keys,
                                                                         web, sso_app):
    """Logout CSRF: a page sends Bob's browser to end_session with an old ID token of
    Alice's. Bob's login ended without a word; the hint names another user than this
    browser's, so Bob is asked first (RPIL §2) and nothing ends meanwhile."""
    _alice, tokens = _tokens(db, tenant, keys, sso_app.test_client())
    bob = provision(db, tenant, "bob@acme.com")
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn),
                                           name_id="bob@acme.com",
                                           attributes={"email": ["bob@acme.com"]}), keys.idp)
    assert post_response(web, conn, forge.b64(xml)).status_code == 303
    shown = web.get(END, query_string={"id_token_hint": tokens["id_token"]})
    assert shown.status_code == 200
    assert "Do you want to sign out?" in shown.text
    live = rows(db, "SELECT user_id FROM login_sessions WHERE revoked_at IS NULL")
    assert bob.id in {r.user_id for r in live}
    assert len(live) == 2  # Alice's too: nothing ended without the confirmation
