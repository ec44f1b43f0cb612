"""Internationalized email domains (RFC 5890, UTS #46): a domain is one domain however it is
written, `münchen.de` or its ASCII form `xn--mnchen-3ya.de`, when an operator routes it and
when an employee types their address at the sign-in page."""

from __future__ import annotations

import pytest

from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.sso import forge
from tests.sso.conftest import PORTAL

ASCII = "xn--mnchen-3ya.de"


def _connection(web, tenant, keys, admin) -> str:
    xml = forge.idp_metadata([keys.idp.cert_b64])
    return web.post(f"/api/v1/orgs/{tenant.org.id}/connections", headers=admin.headers, json={
        "name": "idp", "protocol": "saml", "metadata_xml": xml}).get_json()["id"]


@pytest.mark.parametrize(("added", "verified"), [("MÜNCHEN.de", "münchen.de"),
                                                 (ASCII, "München.DE")])
def test_a_unicode_domain_is_its_ascii_form_when_routed_and_typed(
        db, tenant, keys, web, added, verified):
    """Added and verified in either form, the domain is stored in its ASCII form, and an
    address typed in either form (any case) is routed to the connection."""
    admin, operator = make_key(db, "admin", tenant.org), make_key(db, "operator")
    cid = _connection(web, tenant, keys, admin)
    base = f"/api/v1/orgs/{tenant.org.id}/connections/{cid}/domains"
    response = web.post(base, headers=admin.headers, json={"domain": added})
    assert response.status_code == 201, response.text
    assert response.get_json()["domain"] == ASCII
    assert_problem(web.post(base, headers=admin.headers, json={"domain": "münchen.de"}),
                   409, "conflict")
    done = web.post(f"{base}/{verified}/verify", headers=operator.headers)
    assert done.status_code == 200, done.text
    for email in ("Max.Müller@München.de", f"max@{ASCII.upper()}", "max@münchen.de."):
        routed = web.post("/sso/discover", data={"email": email, "next": PORTAL})
        assert routed.status_code == 303, (email, routed.text[:300])
        assert routed.headers["Location"].startswith(f"/sso/saml/{cid}/login")


def test_a_domain_with_no_ascii_form_is_refused_and_routes_nowhere(db, tenant, keys, web):
    """Text IDNA refuses (a label of symbols) is a 400 naming the field, and an address in
    it finds no sign-in, never a 500."""
    admin = make_key(db, "admin", tenant.org)
    cid = _connection(web, tenant, keys, admin)
    base = f"/api/v1/orgs/{tenant.org.id}/connections/{cid}/domains"
    for domain in ("☃☃.de", "a\u200db.de", "-münchen.de"):
        assert_problem(web.post(base, headers=admin.headers, json={"domain": domain}),
                       400, "validation")
    for email in ("max@☃☃.de", "max@" + "ü" * 300 + ".de"):
        assert web.post("/sso/discover", data={"email": email}).status_code == 404
    bad_utf8 = web.post("/sso/discover", data="email=max%40%ED%B3%BF.de",
                        content_type="application/x-www-form-urlencoded")
    assert bad_utf8.status_code == 404
