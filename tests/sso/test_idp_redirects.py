"""Redirects from a customer's OIDC IdP: a document (discovery, JWKS) is followed only to
https (from an https URL), and the code exchange follows none.

requests follows redirects by default: an https discovery URL redirecting to plain http
(loopback too) was read from there, though Roster refuses any such endpoint in the
document itself; and a token endpoint answering 307 had the code, the PKCE verifier and,
with client_secret_post, the client secret POSTed again wherever it pointed."""

from __future__ import annotations

import json

import pytest

from app.sso.oidc_rp import fetch_json
from app.sso.outcome import LoginFailed
from tests.conftest import rows
from tests.sso.conftest import provision
from tests.sso.oidc_idp import (
    follow_to_roster,
    oidc_connection,
    refused_with,
    roster_path,
    start_login,
)
from tests.sso.test_metadata_url import https_metadata  # noqa: F401  (the https server)


@pytest.fixture
def trusting(https_metadata, tmp_path, monkeypatch):  # noqa: F811
    """The https server's certificate trusted by requests; (URL, its answer)."""
    url, body, _context = https_metadata
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "tls.crt"))
    body["xml"] = json.dumps({"keys": []})
    return url, body


def test_an_https_document_redirecting_to_plain_http_is_not_followed(trusting, hostile):
    """https -> http (an IdP on loopback here): refused, naming both. Before: read."""
    url, body = trusting
    body["redirect"] = f"{hostile.issuer}/jwks"
    with pytest.raises(LoginFailed) as refused:
        fetch_json(url, private_ok=True)
    assert refused.value.reason == "idp_unreachable"
    assert refused.value.detail == (f"cannot read {url}: it redirects to "
                                    f"{hostile.issuer}/jwks, which is not https")


def test_an_https_document_redirecting_to_https_is_followed(trusting):
    """https -> https: followed as before."""
    url, body = trusting
    body["redirect"] = url.replace("/metadata", "/moved")
    assert fetch_json(url, private_ok=True) == {"keys": []}


def test_a_token_endpoint_redirect_is_not_followed(db, tenant, hostile, web):
    """The token endpoint answers 307 to another URL: the login is refused
    (``token_exchange_failed``), nothing is POSTed there. Before: the POST went on, with
    the code and the verifier, and the login succeeded."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = roster_path(follow_to_roster(start_login(web, conn)))
    hostile.token_redirect = f"{hostile.issuer}/token-elsewhere"
    resp = web.get(callback)
    refused_with(db, resp, "token_exchange_failed")
    assert hostile.redirected_posts == []
    assert rows(db, "SELECT detail FROM sso_login_traces")[0].detail == (
        "the token endpoint answered 307, a redirect (not followed)")
