"""Every error answer of Roster's OpenID Provider (/sso/oidc/*) says ``Cache-Control:
no-store``: token-endpoint errors (RFC 6749 §5.2, as authlib's), the bearer refusals of
userinfo (RFC 6750 §3, the answer is about a token) and the 503 of a provider that is not
configured, as the rest of Roster's error answers."""

from __future__ import annotations

import pytest

from tests.sso.portal import BASIC, exchange, login_and_code

UNCONFIGURED = [
    ("GET", "/sso/oidc/.well-known/openid-configuration"),
    ("GET", "/sso/oidc/jwks"),
    ("GET", "/sso/oidc/authorize?client_id=portal&response_type=code"),
    ("POST", "/sso/oidc/token"),
    ("POST", "/sso/oidc/introspect"),
    ("POST", "/sso/oidc/revoke"),
    ("GET", "/sso/oidc/end_session"),
]


@pytest.mark.parametrize(("method", "path"), UNCONFIGURED)
def test_the_503_of_an_unconfigured_provider_is_no_store(client, method, path):
    """Without [oidc_provider] each endpoint answers 503 in OAuth's format, no-store: an
    intermediary must not keep the outage past the configuration that ends it."""
    resp = client.open(path, method=method)
    assert resp.status_code == 503, resp.data[:300]
    assert resp.get_json()["error_description"] == "OIDC provider is not configured"
    assert resp.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("header", [None, "Basic eA==", "Bearer nope"])
def test_a_userinfo_refusal_is_no_store(web, db, header):
    """No token, another scheme, an unknown token: the 401 is no-store."""
    resp = web.get("/sso/oidc/userinfo", headers={"Authorization": header} if header else {})
    assert resp.status_code == 401
    assert resp.headers["Cache-Control"] == "no-store"


def test_the_provider_error_answers_of_a_signed_in_portal_are_no_store(db, tenant, keys,
                                                                        web):
    """Token, introspection and revocation errors (authlib's) and userinfo with a revoked
    token: all no-store."""
    _user, req, code = login_and_code(db, tenant, keys, web)
    tokens = exchange(web, code, req.verifier).get_json()
    answers = [
        web.post("/sso/oidc/token", data={"grant_type": "authorization_code", "code": "x"},
                 headers={"Authorization": BASIC}),
        web.post("/sso/oidc/token", data={"grant_type": "nothing"},
                 headers={"Authorization": BASIC}),
        web.post("/sso/oidc/introspect", data={"token": "x"}),
        web.post("/sso/oidc/revoke", data={"token": "x"},
                 headers={"Authorization": "Basic eDp5"}),
    ]
    web.post("/sso/oidc/revoke", data={"token": tokens["access_token"]},
             headers={"Authorization": BASIC})
    answers.append(web.get("/sso/oidc/userinfo",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"}))
    for resp in answers:
        assert resp.status_code in (400, 401), resp.data[:300]
        assert resp.headers["Cache-Control"] == "no-store", resp.data[:300]
