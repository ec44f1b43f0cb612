"""NUL in an /sso request: refused before any lookup, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from tests.conftest import rows
from tests.sso.conftest import saml_connection


@pytest.mark.parametrize("path", [
    "/sso/oidc/{conn}/callback?state=%00&code=x",
    "/sso/oidc/{conn}/callback?state=a&code=%00",
    "/sso/oidc/{conn}/callback?error=%00&state=%00",
    "/sso/oidc/a%00b/callback?state=a&code=b",
    "/sso/saml/a%00b/login",
    "/sso/saml/{conn}/login?next=%00",
    "/sso/oidc/authorize?client_id=%00&response_type=code",
    "/sso/oidc/authorize?client_id=portal&response_type=code&nonce=a%00b",
])
def test_nul_in_the_path_or_query_is_a_plain_400(db, tenant, keys, web, path):
    """PostgreSQL cannot compare text holding NUL: these were 500s there."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    response = web.get(path.format(conn=conn.id))
    assert response.status_code == 400, response.text
    assert "holds a NUL character" in response.text
    assert rows(db, "SELECT count(*) AS n FROM sso_login_traces")[0].n == 0


def test_nul_in_a_posted_form_is_a_plain_400(db, tenant, keys, web):
    """The ACS and the token endpoint take forms: a NUL there is refused as well."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    response = web.post(f"/sso/saml/{conn.id}/acs", data={"SAMLResponse": "x\x00",
                                                          "RelayState": "r"})
    assert response.status_code == 400
    response = web.post("/sso/oidc/token", data={"grant_type": "authorization_code",
                                                 "code": "\x00", "client_id": "portal"})
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid_request"


@pytest.mark.parametrize(("method", "path", "form"), [
    ("post", "/sso/oidc/token", {"grant_type": "authorization_code", "code": "a\x00"}),
    ("post", "/sso/oidc/token", {"grant_type": "refresh_token", "refresh_token": "\x00"}),
    ("post", "/sso/oidc/introspect", {"token": "rat_\x00"}),
    ("post", "/sso/oidc/revoke", {"token": "rrt_\x00"}),
    ("post", "/sso/oidc/userinfo", {"x": "\x00"}),
    ("get", "/sso/oidc/userinfo?x=%00", None),
    ("get", "/sso/oidc/jwks?x=%00", None),
])
def test_nul_at_an_endpoint_the_portal_calls_is_oauth_json(db, tenant, keys, web, method,
                                                           path, form):
    """The portal's back-channel endpoints answer a NUL as every other malformed request:
    OAuth's ``invalid_request`` in JSON (RFC 6749 §5.2), never the browser's HTML page."""
    response = getattr(web, method)(path, data=form)
    assert response.status_code == 400, response.text
    assert response.mimetype == "application/json", response.text[:200]
    assert response.get_json()["error"] == "invalid_request"
    assert response.headers["Cache-Control"] == "no-store"
    if "userinfo" in path:
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_request"'
    assert rows(db, "SELECT count(*) AS n FROM issued_tokens")[0].n == 0


def test_http_errors_under_sso_are_pages_for_browsers_and_json_for_the_portal(web, db, tenant,
                                                                            keys):
    """A GET on the ACS (405), an unknown /sso path (404) and a SAMLResponse past the size
    limit (413) reach a browser: plain pages, as every other sign-in failure (they were
    JSON). The portal's back-channel endpoints keep JSON."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    for response, status in ((web.get(f"/sso/saml/{conn.id}/acs"), 405),
                             (web.get("/sso/saml/x/nothing"), 404),
                             (web.post(f"/sso/saml/{conn.id}/acs",
                                       data={"SAMLResponse": "A" * 3_000_000}), 413)):
        assert response.status_code == status
        assert response.mimetype == "text/html", response.data[:200]
        assert "<script" not in response.text
    token = web.get("/sso/oidc/token")
    assert token.status_code == 405
    assert token.mimetype == "application/json"
