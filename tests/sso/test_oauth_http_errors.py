"""HTTP errors raised before an OAuth/OIDC endpoint runs (an unknown path under its prefix,
a body past ``app.max_body_bytes``) answer in OAuth's error format (RFC 6749 §5.2), as the
405s there do: a portal's or IdP's OAuth library reads ``error``, not the app's generic
{"error": "Not Found", "detail": ...}."""

from __future__ import annotations

import pytest

BIG = "A" * 3_000_000  # past the default app.max_body_bytes (2 MiB)


def _oauth_error(response, status: int) -> dict:
    assert response.status_code == status, response.data[:300]
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["error"] == "invalid_request", body
    assert isinstance(body["error_description"], str)
    assert body["error_description"]
    assert "detail" not in body
    assert response.headers["Cache-Control"] == "no-store"
    return body


@pytest.mark.parametrize("path", [
    "/oauth/nothing", "/oauth/token/extra", "/sso/oidc/token/extra", "/sso/oidc/tokens",
    "/sso/oidc/revoke/x", "/sso/oidc/introspect/x", "/sso/oidc/userinfo/x",
    "/sso/oidc/jwks/x", "/sso/oidc/.well-known/nothing",
])
def test_an_unknown_path_under_an_oauth_prefix_is_an_oauth_404(web, path):
    """404 with {"error": "invalid_request", "error_description": ...}."""
    body = _oauth_error(web.get(path), 404)
    assert path in body["error_description"]


@pytest.mark.parametrize("path", ["/oauth/token", "/sso/oidc/token", "/sso/oidc/revoke",
                                  "/sso/oidc/introspect", "/sso/oidc/userinfo"])
def test_a_body_past_the_limit_at_an_oauth_endpoint_is_an_oauth_413(web, path):
    """413 in OAuth's format, however the endpoint would have read the form."""
    body = _oauth_error(web.post(path, data={"grant_type": "client_credentials",
                                             "token": BIG}), 413)
    assert "too large" in body["error_description"].lower()


def test_other_paths_keep_their_formats(web):
    """Outside the OAuth prefixes nothing changes: a browser page under /sso, the app's
    JSON elsewhere."""
    page = web.get("/sso/oidc/nothing")
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    other = web.get("/nothing-here")
    assert other.status_code == 404
    assert other.get_json()["error"] == "Not Found"
