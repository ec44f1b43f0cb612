"""Requests to Roster's OpenID Provider that authlib could not answer: each gets the OAuth
error the spec asks for, never a 500.

authlib builds no error whose ``error_description`` holds a character RFC 6749 forbids
there (``"``, ``\\``, anything outside printable ASCII): a ValueError instead. And its
``client_secret_basic`` raised a ValueError on an ``Authorization: Basic`` header without
credentials, or with credentials that are not UTF-8."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.sso.conftest import PORTAL_CALLBACK
from tests.sso.portal import AuthRequest


def _portal_error(resp) -> dict[str, str]:
    """The error parameters of a redirect back to the portal's callback."""
    assert resp.status_code in (302, 303), resp.text
    parts = urlsplit(resp.headers["Location"])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == PORTAL_CALLBACK
    return {k: v[0] for k, v in parse_qs(parts.query).items()}


@pytest.mark.parametrize("header", [
    "Basic ",  # no credentials after the scheme
    "Basic " + base64.b64encode(b"portal:\xff\xfe").decode(),  # not UTF-8
])
@pytest.mark.parametrize("path", ["/sso/oidc/token", "/sso/oidc/introspect",
                                  "/sso/oidc/revoke"])
def test_an_unreadable_basic_header_is_invalid_client(web, path, header):
    """401 ``invalid_client`` (RFC 6749 §5.2), as for a wrong secret. Before: 500."""
    resp = web.post(path, data={"grant_type": "authorization_code", "code": "x",
                                "token": "x"}, headers={"Authorization": header})
    assert resp.status_code == 401, resp.text
    assert resp.get_json()["error"] == "invalid_client"


@pytest.mark.parametrize(("value", "quoted"), [("é", "?"), ('a"b', "a?b"), ("a\\b", "a?b")])
def test_an_unsupported_prompt_value_of_any_characters_goes_back_to_the_portal(web, value,
                                                                                quoted):
    """``prompt`` with a value Roster does not support, holding a character an error
    description may not: ``invalid_request`` at the portal's redirect URI, the value
    quoted with ``?`` for it (OIDC Prompt Create §4.1). Before: a 500 page."""
    req = AuthRequest.new()
    resp = web.get(req.url(prompt=value).replace("http://roster.test", ""))
    error = _portal_error(resp)
    assert (error["error"], error["state"]) == ("invalid_request", req.state)
    assert error["error_description"] == f"unsupported prompt value: {quoted}"


@pytest.mark.parametrize("value", ["codé", 'code"', "id_token\\"])
def test_an_unsupported_response_type_of_any_characters_goes_back_to_the_portal(web,
                                                                                  value):
    """``response_type`` neither ``code`` nor quotable: ``unsupported_response_type`` at
    the portal's redirect URI (RFC 6749 §4.1.2.1), as a plain unsupported one gets.
    Before: a 500 page."""
    req = AuthRequest.new()
    resp = web.get(req.url(response_type=value).replace("http://roster.test", ""))
    error = _portal_error(resp)
    assert (error["error"], error["state"]) == ("unsupported_response_type", req.state)
    assert error["error_description"] == f"response_type={value[:-1]}? is not supported"
