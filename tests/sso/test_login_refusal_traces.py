"""The trace a refusal at a login start (SAML and OIDC) or at the OIDC callback writes names
what is known of the connection, as the ACS's do (tests/sso/test_acs_refusal_traces.py): a
disabled connection's organization and id (its admin finds the correlation id the user
quotes), and, for an id naming no connection of the endpoint's protocol, why, in a detail
of bounded length."""

from __future__ import annotations

import re

import pytest

from app.db import new_id
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.sso.conftest import provision, saml_connection
from tests.sso.oidc_idp import follow_to_roster, oidc_connection, roster_path, start_login


def _correlation_id(resp) -> str:
    found = re.search(r"<code id=correlation-id>([^<]+)</code>", resp.text)
    assert found, resp.text
    return found.group(1)


def _disable(db, web, tenant, conn):
    """The connection disabled by its admin through the API; the admin's key."""
    admin = make_key(db, "admin", tenant.org)
    disabled = web.post(f"/api/v1/orgs/{tenant.org.id}/connections/{conn.id}/disable",
                        headers=admin.headers)
    assert disabled.status_code == 200, disabled.text
    return admin


def _traced_in_org(db, web, tenant, admin, resp, conn, protocol: str) -> None:
    """Refused (403, no session), traced connection_disabled in the connection's
    organization, found by the admin's API under the page's correlation id."""
    assert resp.status_code == 403, resp.text
    assert rows(db, "SELECT id FROM login_sessions") == []
    trace = web.get(f"/api/v1/orgs/{tenant.org.id}/sso/traces/{_correlation_id(resp)}",
                    headers=admin.headers)
    assert trace.status_code == 200, trace.text
    body = trace.get_json()
    assert (body["reason"], body["connection_id"], body["protocol"]) == (
        "connection_disabled", conn.id, protocol)
    name = "SAML" if protocol == "saml" else "OIDC"
    assert body["detail"] == f"the {name} connection {conn.id} is disabled"
    [row] = rows(db, "SELECT organization_id FROM sso_login_traces")
    assert row.organization_id == tenant.org.id


def test_an_oidc_login_start_through_a_disabled_connection_is_traced_in_its_organization(
        db, tenant, hostile, web):
    """GET /sso/oidc/<id>/login of a disabled connection. Before: reason unknown_connection,
    no organization, no connection: the admin's API answered 404 for the quoted id."""
    conn = oidc_connection(db, tenant, hostile)
    admin = _disable(db, web, tenant, conn)
    resp = web.get(f"/sso/oidc/{conn.id}/login")
    _traced_in_org(db, web, tenant, admin, resp, conn, "oidc")


def test_an_oidc_callback_through_a_connection_disabled_meanwhile_is_traced_in_its_org(
        db, tenant, hostile, web):
    """The login began, the IdP answered, and the connection was disabled before the
    browser came back to the callback. Before: unknown_connection, no organization."""
    provision(db, tenant)
    conn = oidc_connection(db, tenant, hostile)
    location = follow_to_roster(start_login(web, conn))
    admin = _disable(db, web, tenant, conn)
    resp = web.get(roster_path(location))
    _traced_in_org(db, web, tenant, admin, resp, conn, "oidc")


def test_a_saml_login_start_through_a_disabled_connection_is_traced_in_its_organization(
        db, tenant, keys, web):
    """GET /sso/saml/<id>/login of a disabled connection. Before: a 404 page with no
    correlation id and no trace at all, so nothing for the admin to find."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    admin = _disable(db, web, tenant, conn)
    resp = web.get(f"/sso/saml/{conn.id}/login")
    _traced_in_org(db, web, tenant, admin, resp, conn, "saml")
    assert rows(db, "SELECT id FROM saml_requests") == []


def test_a_saml_login_start_without_the_idps_sso_url_is_traced_as_misconfigured(
        db, tenant, keys, web):
    """A SAML connection with no IdP SSO URL (its metadata not imported yet) cannot start a
    login: traced misconfigured in its organization. Before: an untraced 404."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], sso_url=None)
    resp = web.get(f"/sso/saml/{conn.id}/login")
    assert resp.status_code == 403, resp.text
    [trace] = rows(db, "SELECT id, organization_id, connection_id, reason "
                       "FROM sso_login_traces")
    assert (trace.id, trace.organization_id, trace.connection_id, trace.reason) == (
        _correlation_id(resp), tenant.org.id, conn.id, "misconfigured")


@pytest.mark.parametrize("which", ["missing", "too_long", "odd_characters", "other_protocol"])
@pytest.mark.parametrize("endpoint", ["oidc/login", "oidc/callback", "saml/login"])
def test_a_login_through_no_connection_of_the_protocol_is_traced_with_why(
        db, tenant, keys, hostile, web, endpoint, which):
    """An id naming no connection of the endpoint's protocol (none at all, an id longer than
    any, odd characters, a connection of the other protocol): the refusal page (403, not a
    500), one trace without organization or connection, reason unknown_connection, its
    detail saying which and quoting at most 36 characters of the id. Before: the OIDC
    endpoints said "no OIDC connection" for all four, the SAML login start traced nothing
    (a 404 page)."""
    protocol, _, step = endpoint.partition("/")
    ids = {"missing": new_id(), "too_long": "a" * 3000, "odd_characters": "é..;x"}
    if which == "other_protocol":
        connection_id = (saml_connection(db, tenant, [keys.idp.cert_b64]).id
                         if protocol == "oidc" else oidc_connection(db, tenant, hostile).id)
    else:
        connection_id = ids[which]
    resp = web.get(f"/sso/{protocol}/{connection_id}/{step}",
                   query_string={"state": "s", "code": "c"} if step == "callback" else {})
    assert resp.status_code == 403, resp.text
    [trace] = rows(db, "SELECT id, organization_id, connection_id, protocol, reason, detail "
                       "FROM sso_login_traces")
    assert trace.id == _correlation_id(resp)
    assert (trace.organization_id, trace.connection_id, trace.protocol, trace.reason) == (
        None, None, protocol, "unknown_connection")
    if which == "other_protocol":
        name = "a SAML" if protocol == "saml" else "an OIDC"
        assert trace.detail == f"the connection {connection_id} is not {name} connection"
    else:
        assert trace.detail == f"no connection {connection_id[:36]}"
