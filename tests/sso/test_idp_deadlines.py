"""A customer's OIDC IdP that answers a byte at a time (or stops halfway) cannot hold a
login: discovery, JWKS and the code exchange each end within the timeout as a whole, and
the employee gets the sign-in refusal page with its trace, never a 500.

requests' timeout bounds each read, not the exchange: an IdP sending its discovery
document, its JWKS or its token response a byte every 0.05 s (each read well within the
timeout) held the login request for as long as the answer lasted. Now the whole exchange
is cut at the timeout (app/http_deadline.py cuttable_session)."""

from __future__ import annotations

import pytest

from app.sso import oidc_rp
from tests.conftest import rows
from tests.sso.conftest import provision
from tests.sso.oidc_idp import (
    follow_to_roster,
    oidc_connection,
    refused_with,
    roster_path,
    start_login,
)

TIMEOUT = 1.0
BYTE_EVERY = 0.05  # a discovery document of ~450 bytes lasts over 20 s


@pytest.fixture
def short_timeout(monkeypatch):
    """The IdP timeout at 1 s (10 s in production), so that a trickle outlasts it soon."""
    monkeypatch.setattr(oidc_rp, "HTTP_TIMEOUT_SECONDS", TIMEOUT)


@pytest.fixture
def cold(sso_app):
    """No discovery document or JWKS cached from an earlier test: this login reads them."""
    sso_app.extensions.pop("roster.oidc_providers", None)
    yield
    sso_app.extensions.pop("roster.oidc_providers", None)


def test_a_trickling_discovery_document_is_cut_at_the_timeout(db, tenant, hostile, web,
                                                              short_timeout, cold):
    """The login's discovery read ends at the timeout: refused (403, traced as
    idp_unreachable, "no complete answer within 1 s"). Before: the login waited for the
    whole trickle, then went on to the IdP."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.trickle = {"/.well-known/openid-configuration": BYTE_EVERY}
    try:
        resp = web.get(f"/sso/oidc/{conn.id}/login")
    finally:
        hostile.trickle = {}
    refused_with(db, resp, "idp_unreachable")
    detail = db_detail(db)
    assert detail == (f"cannot read {hostile.discovery_url}: no complete answer within 1 s")


@pytest.mark.parametrize("path", ["/jwks", "/token"])
def test_a_trickling_jwks_or_token_response_is_cut_at_the_timeout(db, tenant, hostile, web,
                                                                  short_timeout, cold, path):
    """The callback's JWKS download or code exchange ends at the timeout: refused (403,
    idp_unreachable), no session. Before: the callback waited for the whole trickle, then
    signed the employee in."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    callback = roster_path(follow_to_roster(start_login(web, conn)))
    hostile.trickle = {path: BYTE_EVERY}
    try:
        resp = web.get(callback)
    finally:
        hostile.trickle = {}
    refused_with(db, resp, "idp_unreachable")
    expected = (f"cannot read {hostile.issuer}/jwks: " if path == "/jwks"
                else "token endpoint: ")
    assert db_detail(db) == expected + "no complete answer within 1 s"


def test_a_discovery_document_cut_short_is_a_refusal_not_a_500(db, tenant, hostile, web,
                                                                cold):
    """An IdP closing the connection before the Content-Length it announced: the login is
    refused (idp_unreachable, traced). Before: urllib3's IncompleteRead escaped the
    handler of requests' errors, a 500."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    hostile.truncate = {"/.well-known/openid-configuration"}
    resp = web.get(f"/sso/oidc/{conn.id}/login")
    refused_with(db, resp, "idp_unreachable")
    assert db_detail(db).startswith(f"cannot read {hostile.discovery_url}: ")


def db_detail(db) -> str:
    """The detail of the one trace."""
    return rows(db, "SELECT detail FROM sso_login_traces")[0].detail
