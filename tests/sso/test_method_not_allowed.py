"""405 at the OAuth/OIDC endpoints in OAuth's error format, and on browser pages with the
``Allow`` header RFC 9110 §15.5.6 requires, as /api/v1 and /scim/v2 answer theirs."""

from __future__ import annotations

import pytest

from tests.sso.conftest import saml_connection


def _allowed(response) -> set[str]:
    return {m.strip() for m in response.headers.get("Allow", "").split(",") if m.strip()}


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/oauth/token", {"POST"}),
    ("DELETE", "/oauth/token", {"POST"}),
    ("OPTIONS", "/oauth/token", {"POST"}),
    ("GET", "/sso/oidc/token", {"POST"}),
    ("PUT", "/sso/oidc/token", {"POST"}),
    ("GET", "/sso/oidc/introspect", {"POST"}),
    ("GET", "/sso/oidc/revoke", {"POST"}),
    ("DELETE", "/sso/oidc/userinfo", {"GET", "HEAD", "POST"}),
    ("POST", "/sso/oidc/jwks", {"GET", "HEAD"}),
])
def test_a_method_an_oauth_endpoint_does_not_serve_is_an_oauth_error(web, method, path,
                                                                     allowed):
    """RFC 6749 §5.2 JSON (``error``, ``error_description``) that an OAuth client library
    reads, with Allow; it was the app's generic {"error": "Method Not Allowed", "detail"}."""
    response = web.open(path, method=method)
    assert response.status_code == 405
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == "invalid_request"
    assert body["error_description"].startswith(f"{method} is not allowed here")
    assert "detail" not in body
    assert _allowed(response) == allowed
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/sso/saml/{conn}/acs", {"POST"}),
    ("PUT", "/sso/login", {"GET", "HEAD"}),
    ("GET", "/sso/discover", {"POST"}),
    ("DELETE", "/sso/oidc/authorize", {"GET", "HEAD", "POST"}),
    ("PUT", "/sso/oidc/end_session", {"GET", "HEAD", "POST"}),
    ("OPTIONS", "/sso/saml/{conn}/logout", {"GET", "HEAD", "POST"}),
])
def test_a_browser_pages_405_names_the_methods_in_allow(db, tenant, keys, web, method, path,
                                                       allowed):
    """Still a plain page for the browser, now with the Allow header it lacked."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    response = web.open(path.format(conn=conn.id), method=method)
    assert response.status_code == 405
    assert response.mimetype == "text/html"
    assert _allowed(response) == allowed
