"""Roster as the portal's OpenID Provider: code + PKCE, ID token claims, refresh,
introspection, revocation, key rotation, and the refusals."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from app.db import utcnow
from app.models import Grant, Role, Unit
from app.models.organization import UnitKind
from app.sso.provider_keys import load_provider_keys
from app.sso.provider_views import provider_config
from tests.conftest import rows
from tests.sso.conftest import (
    PORTAL_CALLBACK,
    PORTAL_CLIENT,
    PORTAL_SECRET,
)
from tests.sso.portal import (
    BASIC,
    ISSUER,
    AuthRequest,
    code_from,
    exchange,
    introspect,
    login_and_code,
    signed_in,
    verify_id_token,
)


def _grant(db, tenant, user, role_key: str = "buyer") -> tuple[str, str]:
    with db.transaction() as s:
        unit = Unit(organization_id=tenant.org.id, kind=UnitKind.department, name="Engineering",
                    path="Engineering")
        s.add(unit)
        s.flush()
        role = s.query(Role).filter_by(organization_id=tenant.org.id, key=role_key).one()
        s.add(Grant(organization_id=tenant.org.id, user_id=user.id, unit_id=unit.id,
                    role_id=role.id, parameters={"spending_limit": {"amount": "500",
                                                                    "currency": "EUR"}},
                    source="manual", reason={}))
        return unit.id, role.key


def test_discovery_and_jwks_publish_issuer_endpoints_and_both_keys(web, keys):
    """Discovery names our endpoints; the JWKS carries the signing and the rotated key."""
    meta = web.get("/sso/oidc/.well-known/openid-configuration").get_json()
    assert meta["issuer"] == ISSUER
    assert meta["token_endpoint"] == f"{ISSUER}/token"
    assert meta["code_challenge_methods_supported"] == ["S256"]
    jwks = web.get("/sso/oidc/jwks").get_json()
    assert len(jwks["keys"]) == 2
    assert all("d" not in k for k in jwks["keys"])


def test_tokens_signed_before_a_key_rotation_still_verify_after_it(db, tenant, keys, web,
                                                                   sso_app, monkeypatch):
    """Before: op-old signs and is alone in the JWKS. After: op signs, op-old stays
    published, so the portal verifies the earlier ID token and the new one alike."""
    before = dataclasses.replace(provider_config(sso_app), keys=load_provider_keys(
        {"signing_key_file": str(keys.op_old.key_file), "published_key_files": []}))
    # The authorization server is built from the config once per app (a restart rotates).
    sso_app.extensions.pop("roster.oidc_server", None)
    try:
        with monkeypatch.context() as m:
            m.setitem(sso_app.extensions, "roster.oidc_config", before)
            assert [k["kid"] for k in web.get("/sso/oidc/jwks").get_json()["keys"]] == \
                [before.keys.kid]
            _user, req, code = login_and_code(db, tenant, keys, web)
            old = exchange(web, code, req.verifier).get_json()
    finally:
        sso_app.extensions.pop("roster.oidc_server", None)
    published = [k["kid"] for k in web.get("/sso/oidc/jwks").get_json()["keys"]]
    current = provider_config(sso_app).keys.kid
    assert published == [current, before.keys.kid]
    assert verify_id_token(web, old["id_token"], req.nonce)["header"]["kid"] == before.keys.kid
    assert introspect(web, old["access_token"])["active"] is True
    req = AuthRequest.new()  # the browser is still signed in at Roster: straight to a code
    back = web.get(req.url().replace("http://roster.test", ""))
    new = exchange(web, code_from(back.headers["Location"], req.state), req.verifier).get_json()
    assert verify_id_token(web, new["id_token"], req.nonce)["header"]["kid"] == current


def test_code_flow_with_pkce_gives_id_token_and_userinfo_with_org_claims(db, tenant, keys,
                                                                          web):
    """ID token and userinfo carry stable sub, email, org, units, roles and permissions."""
    user, req, code = login_and_code(db, tenant, keys, web)
    unit_id, role_key = _grant(db, tenant, user)
    resp = exchange(web, code, req.verifier)
    assert resp.status_code == 200, resp.text
    body = resp.get_json()
    claims = verify_id_token(web, body["id_token"], req.nonce)
    jwks = web.get("/sso/oidc/jwks").get_json()
    assert claims["header"]["kid"] == jwks["keys"][0]["kid"]
    assert claims["sub"] == user.id
    assert claims["email"] == "alice@acme.com"
    assert claims["org_id"] == tenant.org.id
    assert claims["units"] == [{"id": unit_id, "name": "Engineering", "path": "Engineering",
                                "kind": "department"}]
    assert [r["role"] for r in claims["roles"]] == [role_key]
    assert claims["roles"][0]["parameters"]["spending_limit"]["amount"] == "500"
    assert {p["permission"] for p in claims["permissions"]}
    info = web.get("/sso/oidc/userinfo",
                   headers={"Authorization": f"Bearer {body['access_token']}"}).get_json()
    assert info["sub"] == user.id
    assert info["roles"] == claims["roles"]
    stored = rows(db, "SELECT token_type, token_hash FROM issued_tokens ORDER BY token_type")
    assert [t.token_type for t in stored] == ["access", "refresh"]
    assert body["access_token"] not in {t.token_hash for t in stored}


def test_a_code_works_once(db, tenant, keys, web):
    """The second exchange of the same code is refused (RFC 6749 §4.1.2)."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    assert exchange(web, code, req.verifier).status_code == 200
    assert exchange(web, code, req.verifier).get_json()["error"] == "invalid_grant"


def test_missing_or_wrong_pkce_verifier_is_refused(db, tenant, keys, web):
    """No verifier, or another one: invalid_grant / invalid_request, no token."""
    _user, _req, code = login_and_code(db, tenant, keys, web)
    assert exchange(web, code, None).status_code == 400
    assert exchange(web, code, "x" * 50).status_code == 400
    assert rows(db, "SELECT count(*) AS n FROM issued_tokens")[0].n == 0


def test_authorization_without_code_challenge_is_refused(db, tenant, keys, web):
    """PKCE is required: the portal is sent back with an error, not a code."""
    req = AuthRequest.new()
    signed_in(db, tenant, keys, web, req.url())
    url = req.url().replace("http://roster.test", "")
    url = url.split("&code_challenge=")[0]
    resp = web.get(url)
    assert resp.status_code == 302
    assert "error=invalid_request" in resp.headers["Location"]
    assert "code=" not in resp.headers["Location"]


def test_unregistered_redirect_uri_gets_an_error_page_not_a_redirect(db, tenant, keys, web):
    """A redirect_uri that is not registered never receives anything (no open redirect)."""
    req = AuthRequest.new()
    signed_in(db, tenant, keys, web, req.url())
    url = req.url().replace("http://roster.test", "").replace(
        "portal.test%2Fcallback", "evil.example%2Fcallback")
    resp = web.get(url)
    assert resp.status_code == 400
    assert "Location" not in resp.headers


def test_wrong_client_secret_is_refused(db, tenant, keys, web):
    """client_secret_basic with the wrong secret: invalid_client."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    resp = web.post("/sso/oidc/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": PORTAL_CALLBACK,
        "code_verifier": req.verifier}, auth=("portal", "wrong"))
    assert resp.status_code == 401
    assert resp.get_json()["error"] == "invalid_client"


def test_refresh_token_rotates_and_the_old_one_dies(db, tenant, keys, web):
    """A refresh gives new tokens; the used refresh token is then inactive."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    first = exchange(web, code, req.verifier).get_json()
    resp = web.post("/sso/oidc/token", data={"grant_type": "refresh_token",
                                             "refresh_token": first["refresh_token"]},
                    headers={"Authorization": BASIC})
    assert resp.status_code == 200, resp.text
    second = resp.get_json()
    assert second["refresh_token"] != first["refresh_token"]
    assert introspect(web, first["refresh_token"]) == {"active": False}
    assert introspect(web, second["access_token"])["active"] is True


def test_introspection_reports_active_then_inactive_after_revocation(db, tenant, keys, web):
    """RFC 7662 says active with sub and scope; after RFC 7009 revocation, inactive."""
    user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    info = introspect(web, tokens["access_token"])
    assert info["active"] is True
    assert info["sub"] == user.id
    assert "organization" in info["scope"]
    resp = web.post("/sso/oidc/revoke", data={"token": tokens["refresh_token"],
                                              "token_type_hint": "refresh_token"},
                    headers={"Authorization": BASIC})
    assert resp.status_code == 200
    assert introspect(web, tokens["refresh_token"]) == {"active": False}
    assert introspect(web, tokens["access_token"]) == {"active": False}
    assert introspect(web, "not-a-token") == {"active": False}


@pytest.mark.parametrize("ended", ["revoked_at = created_at", "expires_at = created_at"])
def test_tokens_die_with_their_login_session(db, tenant, keys, web, ended):
    """Revoking the login session (what lifecycle does), or its expiry, makes its tokens
    inactive: introspection, userinfo, and a refresh (invalid_grant, RFC 6749 §5.2). An
    expired session's tokens used to stay active."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    with db.engine.begin() as c:
        c.exec_driver_sql(f"UPDATE login_sessions SET {ended}")
    assert introspect(web, tokens["access_token"]) == {"active": False}
    assert introspect(web, tokens["refresh_token"]) == {"active": False}
    resp = web.get("/sso/oidc/userinfo",
                   headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert resp.status_code == 401
    refreshed = web.post("/sso/oidc/token", data={"grant_type": "refresh_token",
                                                  "refresh_token": tokens["refresh_token"]},
                         headers={"Authorization": BASIC})
    assert refreshed.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize(("header", "challenge"), [
    (None, "Bearer"), ("Basic x", "Bearer"), ("Bearer nope", 'Bearer error="invalid_token"'),
])
def test_userinfo_without_a_valid_token_is_401(web, db, header, challenge):
    """No token, an unknown token, or the wrong scheme: 401 with a Bearer challenge. With
    no bearer token at all, the challenge has no error code (RFC 6750 §3.1); the old one
    said error="missing_authorization" or "unsupported_token_type", codes RFC 6750 does
    not have."""
    resp = web.get("/sso/oidc/userinfo", headers={"Authorization": header} if header else {})
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"] == challenge
    assert resp.is_json
    assert utcnow()


def test_userinfo_takes_the_token_from_the_header_only(db, tenant, keys, web):
    """RFC 6750 §2: the header is the method a resource server must support; the query
    (§2.3, logged and cached with the URL) and the form are not offered (README)."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    token = exchange(web, code, req.verifier).get_json()["access_token"]
    for resp in (web.get(f"/sso/oidc/userinfo?access_token={token}"),
                 web.post("/sso/oidc/userinfo", data={"access_token": token})):
        assert (resp.status_code, resp.headers["WWW-Authenticate"]) == (401, "Bearer")
    ok = web.post("/sso/oidc/userinfo", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


def test_a_revoked_or_deprovisioned_browser_session_gets_no_code(db, tenant, keys, web):
    """After revocation, authorize sends the browser back to sign in instead of to the portal."""
    req = AuthRequest.new()
    user, _resp = signed_in(db, tenant, keys, web, req.url())
    path = req.url().replace("http://roster.test", "")
    assert web.get(path).status_code == 302
    with db.engine.begin() as c:
        c.exec_driver_sql("UPDATE users SET active = false, status = 'deprovisioned'")
    # A new request of the portal (the first one's nonce is spent: invalid_request now).
    resp = web.get(AuthRequest.new().url().replace("http://roster.test", ""))
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("/sso/login?next=")
    assert user.id


@pytest.mark.parametrize(("name", "value"), [
    ("nonce", "n" * 501), ("scope", " ".join(["openid"] * 200)),
])
def test_authorize_parameters_no_column_can_hold_are_invalid_request(db, tenant, keys, web,
                                                                      name, value):
    """A nonce or scope longer than its column is sent back to the portal as
    invalid_request (RFC 6749 §4.1.2.1), on both databases, not a 500 on PostgreSQL. (A
    NUL anywhere in an /sso request is refused before: tests/sso/test_bad_input.py.)"""
    req = AuthRequest.new()
    if name == "nonce":
        req = dataclasses.replace(req, nonce=value)
    url = (req.url(scope=value) if name == "scope" else req.url())
    signed_in(db, tenant, keys, web, url)
    resp = web.get(url.replace("http://roster.test", ""))
    assert resp.status_code == 302, resp.text
    assert "error=invalid_request" in resp.headers["Location"]
    assert rows(db, "SELECT count(*) AS n FROM oauth_authorization_codes")[0].n == 0


def test_prompt_none_without_a_login_goes_back_with_login_required(web):
    """OIDC Core §3.1.2.6: prompt=none must not show a login page; a browser not signed in
    goes back to the portal with error=login_required and the state."""
    req = AuthRequest.new()
    response = web.get(req.url(prompt="none").replace("http://roster.test", ""))
    assert response.status_code in (302, 303)
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == PORTAL_CALLBACK
    query = parse_qs(location.query)
    assert (query["error"], query["state"]) == (["login_required"], [req.state])
    signed_out = web.get(req.url().replace("http://roster.test", ""))
    assert signed_out.headers["Location"].startswith("/sso/login?next=")


@pytest.mark.parametrize(("extra", "error"), [
    ({"request": "eyJhbGciOiJub25lIn0.eyJub25jZSI6Im90aGVyIn0."}, "request_not_supported"),
    ({"request_uri": "https://portal.test/request.jwt"}, "request_uri_not_supported"),
    ({"response_mode": "form_post"}, "invalid_request"),
    ({"response_mode": "fragment"}, "invalid_request"),
])
def test_what_discovery_does_not_offer_is_refused_not_ignored(db, tenant, keys, web, sso_app,
                                                              extra, error):
    """Discovery says no Request Objects (request_uri_parameter_supported defaults to true
    when omitted, OIDC Discovery §3) and only response_mode=query. A request using them
    goes back to the portal with the OIDC Core §3.1.2.6 error and its state, signed in or
    not, instead of a code delivered as if the Request Object or the mode were not there
    (the old code ignored them)."""
    meta = web.get("/sso/oidc/.well-known/openid-configuration").get_json()
    assert meta["request_parameter_supported"] is False
    assert meta["request_uri_parameter_supported"] is False
    assert meta["response_modes_supported"] == ["query"]
    req = AuthRequest.new()
    signed_in(db, tenant, keys, web, req.url())
    for client in (web, sso_app.test_client()):
        resp = client.get(req.url(**extra).replace("http://roster.test", ""))
        assert resp.status_code == 302, resp.text
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert (query["error"], query["state"]) == ([error], [req.state])
    assert rows(db, "SELECT count(*) AS n FROM oauth_authorization_codes")[0].n == 0
    back = web.get(req.url(response_mode="query").replace("http://roster.test", ""))
    assert code_from(back.headers["Location"], req.state)


def test_authorization_responses_name_the_issuer(db, tenant, keys, web):
    """RFC 9207 §2: a code and an error alike carry iss = the issuer, so a portal talking
    to several providers can tell whose response it got (mix-up); discovery says so."""
    meta = web.get("/sso/oidc/.well-known/openid-configuration").get_json()
    assert meta["authorization_response_iss_parameter_supported"] is True
    req = AuthRequest.new()
    refused = urlsplit(web.get(req.url(prompt="none").replace(
        "http://roster.test", "")).headers["Location"])
    assert parse_qs(refused.query)["iss"] == [ISSUER]
    _user, req, _code = login_and_code(db, tenant, keys, web)
    req = AuthRequest.new()
    query = parse_qs(urlsplit(web.get(req.url().replace(
        "http://roster.test", "")).headers["Location"]).query)
    assert (query["iss"], query["state"]) == ([ISSUER], [req.state])
    assert query["code"]
    bad = parse_qs(urlsplit(web.get(req.url(max_age="x").replace(
        "http://roster.test", "")).headers["Location"]).query)
    assert (bad["error"], bad["iss"]) == (["invalid_request"], [ISSUER])


def test_discovery_names_every_claim_and_client_auth_method_that_works(db, tenant, keys, web):
    """claims_supported holds every claim the ID token and userinfo may carry (the profile
    scope's locale was missing); revocation and introspection accept client_secret_post as
    well as basic, so discovery says so (RFC 8414 §2: omitted, they default to
    client_secret_basic alone)."""
    meta = web.get("/sso/oidc/.well-known/openid-configuration").get_json()
    _user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    claims = verify_id_token(web, tokens["id_token"], req.nonce)
    jwt_claims = {"header", "iss", "aud", "exp", "iat", "nonce", "at_hash"}
    assert set(claims) - jwt_claims <= set(meta["claims_supported"])
    assert {"locale", "auth_time", "sid"} <= set(meta["claims_supported"])
    post = {"client_id": PORTAL_CLIENT, "client_secret": PORTAL_SECRET}
    for endpoint in ("token", "introspection", "revocation"):
        assert meta[f"{endpoint}_endpoint_auth_methods_supported"] == [
            "client_secret_basic", "client_secret_post"]
    active = web.post("/sso/oidc/introspect", data={"token": tokens["access_token"], **post})
    assert active.get_json()["active"] is True
    revoked = web.post("/sso/oidc/revoke", data={"token": tokens["refresh_token"], **post})
    assert revoked.status_code == 200
    assert introspect(web, tokens["access_token"]) == {"active": False}


def test_the_authorization_request_may_be_posted(db, tenant, keys, web):
    """OIDC Core §3.1.2.1: the authorization endpoint MUST support GET and POST (form
    serialization, §13.2). A POST is the same request by GET (the old code: 405); a form
    of another type is refused and redirects nowhere."""
    req = AuthRequest.new()
    form = dict(parse_qs(urlsplit(req.url()).query, keep_blank_values=True))
    first = web.post("/sso/oidc/authorize", data={k: v[0] for k, v in form.items()})
    assert first.status_code == 303
    assert first.headers["Location"] == req.url()
    signed_out = web.get(first.headers["Location"].replace("http://roster.test", ""))
    assert signed_out.headers["Location"].startswith("/sso/login?")
    signed_in(db, tenant, keys, web, req.url())
    again = web.post("/sso/oidc/authorize", data={k: v[0] for k, v in form.items()})
    back = web.get(again.headers["Location"].replace("http://roster.test", ""))
    assert exchange(web, code_from(back.headers["Location"], req.state),
                    req.verifier).status_code == 200
    other = web.post("/sso/oidc/authorize", json={k: v[0] for k, v in form.items()})
    assert other.status_code == 400
    assert "Location" not in other.headers


def test_a_suspended_users_tokens_are_refused_and_come_back_on_resume(db, tenant, keys, web):
    """The mapping's suspension (on_loss = "suspend") is reversible and revokes nothing
    (README): while suspended, the tokens are refused (userinfo 401, introspection
    inactive, refresh invalid_grant); resumed, the same tokens work again. A token used
    during the suspension used to be revoked for good, one left unused not."""
    user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}

    def set_status(status: str) -> None:
        with db.engine.begin() as c:
            c.execute(sa.text("UPDATE users SET status = :s WHERE id = :u"),
                      {"s": status, "u": user.id})

    set_status("suspended")
    assert web.get("/sso/oidc/userinfo", headers=bearer).status_code == 401
    assert introspect(web, tokens["access_token"]) == {"active": False}
    assert introspect(web, tokens["refresh_token"]) == {"active": False}
    refused = web.post("/sso/oidc/token", data={"grant_type": "refresh_token",
                                                "refresh_token": tokens["refresh_token"]},
                       headers={"Authorization": BASIC})
    assert refused.get_json()["error"] == "invalid_grant"
    assert rows(db, "SELECT count(*) FROM issued_tokens WHERE user_id = :u "
                    "AND revoked_at IS NOT NULL", u=user.id)[0][0] == 0

    set_status("active")
    assert web.get("/sso/oidc/userinfo", headers=bearer).status_code == 200
    assert introspect(web, tokens["access_token"])["active"] is True
    refreshed = web.post("/sso/oidc/token", data={"grant_type": "refresh_token",
                                                  "refresh_token": tokens["refresh_token"]},
                         headers={"Authorization": BASIC})
    assert refreshed.status_code == 200, refreshed.text


@pytest.mark.parametrize("value", ["create", "login creat", "none bogus"])
def test_a_prompt_value_discovery_does_not_name_is_invalid_request(db, tenant, keys, web,
                                                                   sso_app, value):
    """prompt_values_supported names what Roster honours; another value (prompt=create, a
    typo) goes back to the portal as invalid_request with its state, signed in or not
    (OpenID Connect Prompt Create 1.0 §4.1), instead of a code as if it were honoured (the
    old code ignored it: no account creation, no sign to the portal)."""
    meta = web.get("/sso/oidc/.well-known/openid-configuration").get_json()
    assert "create" not in meta["prompt_values_supported"]
    req = AuthRequest.new()
    signed_in(db, tenant, keys, web, req.url())
    for client in (web, sso_app.test_client()):
        resp = client.get(req.url(prompt=value).replace("http://roster.test", ""))
        assert resp.status_code == 302, resp.text
        query = parse_qs(urlsplit(resp.headers["Location"]).query)
        assert (query["error"], query["state"]) == (["invalid_request"], [req.state])
    assert rows(db, "SELECT count(*) AS n FROM oauth_authorization_codes")[0].n == 0
    back = web.get(req.url(prompt="consent").replace("http://roster.test", ""))
    assert code_from(back.headers["Location"], req.state)
