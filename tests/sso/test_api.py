"""/api/v1: an organization's connections and failed-login traces, scoped to the key."""

from __future__ import annotations

import re

from tests.api.conftest import make_key
from tests.sso import forge
from tests.sso.conftest import post_response, saml_connection


def test_auditor_reads_traces_by_correlation_id_and_other_orgs_see_nothing(
        db, tenant, other_tenant, keys, web):
    """The id on the refusal page finds the trace; another org's key gets 404."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    page = post_response(web, conn, forge.b64("<broken"))
    correlation = re.search(r"id=correlation-id>([^<]+)<", page.text).group(1)
    auditor = make_key(db, "auditor", tenant.org)
    base = f"/api/v1/orgs/{tenant.org.id}/sso/traces"
    listing = web.get(base, headers=auditor.headers)
    assert listing.status_code == 200, listing.text
    assert [t["id"] for t in listing.get_json()["items"]] == [correlation]
    one = web.get(f"{base}/{correlation}", headers=auditor.headers).get_json()
    assert one["reason"] == "malformed_response"
    filtered = web.get(base, query_string={"reason": "replay"}, headers=auditor.headers)
    assert filtered.get_json()["items"] == []
    stranger = make_key(db, "auditor", other_tenant.org)
    assert web.get(f"{base}/{correlation}", headers=stranger.headers).status_code == 404
    assert web.get(base, headers=stranger.headers).status_code == 404
    assert web.get(f"{base}/{'x' * 80}", headers=auditor.headers).status_code == 404


def test_admin_lists_connections_and_the_portal_key_may_not(db, tenant, keys, web):
    """connections:read belongs to admins; the portal's key is refused."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64, keys.idp_second.cert_b64])
    admin = make_key(db, "admin", tenant.org)
    items = web.get(f"/api/v1/orgs/{tenant.org.id}/connections",
                    headers=admin.headers).get_json()["items"]
    assert [(c["id"], c["certificates"], c["protocol"]) for c in items] == [(conn.id, 2, "saml")]
    portal = make_key(db, "portal", tenant.org)
    assert web.get(f"/api/v1/orgs/{tenant.org.id}/connections",
                   headers=portal.headers).status_code == 403


def test_an_empty_or_overlong_trace_reason_filter_is_a_400(db, tenant, web):
    """``?reason=`` matched no trace and answered an empty list (every other list filter
    of the API refuses an empty value with a 400 naming it); a reason longer than the
    column (50) cannot match either. Both are a 400 naming ``reason``."""
    auditor = make_key(db, "auditor", tenant.org)
    base = f"/api/v1/orgs/{tenant.org.id}/sso/traces"
    for reason in ("", "r" * 51):
        response = web.get(base, query_string={"reason": reason}, headers=auditor.headers)
        assert response.status_code == 400, response.text
        assert [e["field"] for e in response.get_json()["errors"]] == ["reason"]
