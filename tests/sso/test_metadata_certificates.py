"""The signing certificates of imported IdP metadata are X.509 certificates, or the import is
refused. One inside PEM armour (`-----BEGIN CERTIFICATE-----` in `<ds:X509Certificate>`, as
some exports write it) was stored armour and all, counted ("1 signing certificate(s)") and
never matched: every login through the connection was refused as `untrusted_certificate`.
Text that is no certificate at all was stored the same way."""

from __future__ import annotations

import json

from app.models.sso import SsoConnection
from tests.api.conftest import make_key
from tests.api.test_frame import assert_problem
from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, start


def _certs(db) -> list[list[str]]:
    return [c if isinstance(c, list) else json.loads(c)
            for c in (r.idp_certs for r in rows(db, "SELECT idp_certs FROM sso_connections"))]


def test_a_certificate_in_pem_armour_is_imported_and_trusted(db, tenant, keys, web):
    """Imported through the API, it is stored as its base64 body and a login signed with it
    goes through."""
    headers = make_key(db, "admin", tenant.org).headers
    resp = web.post(f"/api/v1/orgs/{tenant.org.id}/connections", headers=headers, json={
        "name": "pem", "protocol": "saml", "directory": tenant.directory.name,
        "metadata_xml": forge.idp_metadata([keys.idp.cert_pem])})
    assert resp.status_code == 201, resp.text
    assert resp.get_json()["certificates"] == 1
    assert _certs(db) == [[keys.idp.cert_b64]]
    provision(db, tenant)
    with db.transaction() as s:
        conn = s.get(SsoConnection, resp.get_json()["id"])
    request_id = start(web, conn)
    xml = forge.signed_response(claims_for(conn, in_response_to=request_id), keys.idp)
    answer = post_response(web, conn, forge.b64(xml))
    assert answer.status_code == 303, answer.text


def test_metadata_whose_certificate_is_not_one_is_refused(db, tenant, keys, web):
    """A 400 naming the metadata, nothing stored; a good certificate beside it does not
    make the bad one acceptable."""
    headers = make_key(db, "admin", tenant.org).headers
    base = f"/api/v1/orgs/{tenant.org.id}/connections"
    for certs in (["bm90IGEgY2VydGlmaWNhdGU="], ["not base64 at all!"],
                  [keys.idp.cert_b64, "bm90IGEgY2VydGlmaWNhdGU="]):
        body = assert_problem(web.post(base, headers=headers, json={
            "name": "bad", "protocol": "saml", "metadata_xml": forge.idp_metadata(certs)}),
            400, "validation")
        assert "certificate" in body["detail"], body
        assert [e["field"] for e in body["errors"]] == ["metadata_xml"], body
    assert rows(db, "SELECT id FROM sso_connections") == []
