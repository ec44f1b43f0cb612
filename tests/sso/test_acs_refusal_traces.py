"""The trace a SAML ACS refusal writes names what is known of the connection: a disabled
connection's organization (so its admin sees the refusal among the organization's traces)
and, for a connection that is not there, why it was refused."""

from __future__ import annotations

import re

import pytest

from app.db import new_id
from tests.api.conftest import make_key
from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start
from tests.sso.oidc_idp import oidc_connection


def _correlation_id(resp) -> str:
    found = re.search(r"<code id=correlation-id>([^<]+)</code>", resp.text)
    assert found, resp.text
    return found.group(1)


def test_a_saml_login_through_a_disabled_connection_is_traced_in_its_organization(
        db, tenant, keys, web):
    """A signed response posted to the ACS of a connection disabled after the login began:
    refused (403, no session), and the trace names the organization and the connection
    with reason connection_disabled, so the organization's admin finds it by the page's
    correlation id. Before: reason unknown_connection, no organization and no connection,
    so the admin's API answered 404 for the id the user quoted."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn)), keys.idp)
    admin = make_key(db, "admin", tenant.org)
    disabled = web.post(f"/api/v1/orgs/{tenant.org.id}/connections/{conn.id}/disable",
                        headers=admin.headers)
    assert disabled.status_code == 200, disabled.text

    resp = post_response(web, conn, forge.b64(xml))
    assert resp.status_code == 403, resp.text
    assert rows(db, "SELECT id FROM login_sessions") == []
    trace = web.get(f"/api/v1/orgs/{tenant.org.id}/sso/traces/{_correlation_id(resp)}",
                    headers=admin.headers)
    assert trace.status_code == 200, trace.text
    body = trace.get_json()
    assert (body["reason"], body["connection_id"], body["protocol"]) == (
        "connection_disabled", conn.id, "saml")
    assert body["detail"] == f"the SAML connection {conn.id} is disabled"
    [row] = rows(db, "SELECT organization_id FROM sso_login_traces")
    assert row.organization_id == tenant.org.id


@pytest.mark.parametrize("which", ["missing", "too_long", "odd_characters", "oidc"])
def test_a_saml_response_to_no_saml_connection_is_traced_with_why(db, tenant, hostile, web,
                                                                  which):
    """A response posted to the ACS of an id that names no SAML connection (none at all, an
    id longer than any, odd characters, an OIDC connection's): the refusal page (403, not
    a 500), one trace without organization or connection, reason unknown_connection and
    a detail saying which: no such connection, or one that is not SAML."""
    ids = {"missing": new_id(), "too_long": "a" * 3000, "odd_characters": "é..;x"}
    connection_id = (oidc_connection(db, tenant, hostile).id if which == "oidc"
                     else ids[which])
    resp = web.post(f"/sso/saml/{connection_id}/acs", data={"SAMLResponse": "eA=="})
    assert resp.status_code == 403, resp.text
    [trace] = rows(db, "SELECT id, organization_id, connection_id, protocol, reason, detail "
                       "FROM sso_login_traces")
    assert trace.id == _correlation_id(resp)
    assert (trace.organization_id, trace.connection_id, trace.protocol, trace.reason) == (
        None, None, "saml", "unknown_connection")
    if which == "oidc":
        assert trace.detail == f"the connection {connection_id} is not a SAML connection"
    else:
        assert trace.detail == f"no connection {connection_id[:36]}"
