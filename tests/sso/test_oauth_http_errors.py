"""HTTP errors raised before an OAuth/OIDC endpoint runs (an unknown path under its prefix,
a body past ``app.max_body_bytes``) answer in OAuth's error format (RFC 6749 §5.2), as the
405s there do: a portal's or IdP's OAuth library reads ``error``, not the app's generic
{"error": "Not Found", "detail": ...}."""

from __future__ import annotations

import gzip
import io

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


def _chunked(web, path: str, form: bytes, **headers: str):
    # As gunicorn hands over a chunked body: no Content-Length, the server ends the stream.
    return web.open(path, method="POST", input_stream=io.BytesIO(form),
                    environ_overrides={"wsgi.input_terminated": True,
                                       "HTTP_TRANSFER_ENCODING": "chunked"},
                    headers={"Content-Type": "application/x-www-form-urlencoded", **headers})


@pytest.mark.parametrize("path", ["/oauth/token", "/sso/oidc/token", "/sso/oidc/revoke",
                                  "/sso/oidc/introspect"])
def test_a_chunked_form_past_the_limit_is_an_oauth_413_not_a_cut_form(web, sso_app, path):
    """Werkzeug read a form without Content-Length up to app.max_body_bytes and parsed the
    cut: a form padded past the limit was answered as if its tail (here grant_type) were
    never sent, a 400 naming a missing parameter. Now 413, as with a Content-Length; a form
    of exactly the limit is still read."""
    limit = sso_app.config["ROSTER"]["app"]["max_body_bytes"]
    head = b"client_id=a&client_secret=b&pad="
    padded = head + b"x" * (limit - len(head))
    body = _oauth_error(_chunked(web, path, padded + b"&grant_type=client_credentials"), 413)
    assert "too large" in body["error_description"].lower()
    assert _chunked(web, path, padded).status_code != 413


@pytest.mark.parametrize("path", ["/oauth/token", "/sso/oidc/token", "/sso/oidc/revoke"])
def test_a_compressed_form_is_an_oauth_415_naming_the_coding(web, path):
    """A gzip body was parsed as the form itself and answered with a missing grant_type (or
    client); RFC 9110 §15.5.16: 415 naming the coding."""
    form = gzip.compress(b"grant_type=client_credentials&client_id=a&client_secret=b")
    response = web.post(path, data=form, headers={"Content-Encoding": "gzip"},
                        content_type="application/x-www-form-urlencoded")
    assert "gzip" in _oauth_error(response, 415)["error_description"]
