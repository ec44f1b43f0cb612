"""A signed, valid Response whose subject python3-saml refuses to read (an empty NameID, a
NameID qualified for another SP, an Attribute Name given twice, an EncryptedID no SP key
opens) is a traced refusal, not a 500: the ACS read the NameID and attributes after the
validation, outside its refusals."""

from __future__ import annotations

import re

import pytest

from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start


def _duplicated_groups(assertion: str) -> str:
    again = (f'<saml:Attribute Name="groups" NameFormat="{forge.BASIC}">'
             "<saml:AttributeValue>Approvers</saml:AttributeValue></saml:Attribute>")
    return assertion.replace("</saml:AttributeStatement>", again + "</saml:AttributeStatement>")


@pytest.mark.parametrize(("change", "reason", "detail"), [
    (lambda a: re.sub(r"(<saml:NameID [^>]*>)[^<]*(</saml:NameID>)", r"\1\2", a),
     "missing_attribute", "An empty NameID value found"),
    (lambda a: a.replace("<saml:NameID ", '<saml:NameID SPNameQualifier="https://other.sp/" '),
     "audience_mismatch", "The SPNameQualifier value mistmatch the SP entityID value."),
    (_duplicated_groups, "malformed_response", "Found an Attribute element with duplicated Name"),
])
def test_a_subject_python3_saml_will_not_read_is_a_traced_refusal(db, tenant, keys, web, change,
                                                                   reason, detail):
    """403 with the sign-in refusal page and a trace naming why; no session, the request
    and the assertion not used up (the refusal rolls back as the validation's do)."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    claims = claims_for(conn, in_response_to=start(web, conn))
    assertion = forge.sign(change(forge.assertion_xml(claims)), keys.idp)
    response = post_response(web, conn, forge.b64(forge.response_xml(claims, [assertion])))
    assert response.status_code == 403, response.text
    assert "Something went wrong" not in response.text
    traces = rows(db, "SELECT id, reason, detail FROM sso_login_traces")
    assert [(t.reason, t.detail) for t in traces] == [(reason, detail)]
    assert traces[0].id in response.text
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0
    assert rows(db, "SELECT count(*) AS n FROM saml_seen_assertions")[0].n == 0
    assert rows(db, "SELECT count(*) AS n FROM saml_requests WHERE used_at IS NULL")[0].n == 1


def _encrypted_name_id(assertion: str, cert_pem: str) -> str:
    """The assertion with its NameID as an EncryptedID to ``cert_pem`` (SAML Core §2.2.4)."""
    doc = forge.parse(assertion)
    name_id = doc.find("saml:Subject/saml:NameID", forge.NS)
    forge.encrypt_element(doc, name_id, "EncryptedID", cert_pem)
    return forge.tostring(doc)


def test_an_encrypted_name_id_no_sp_key_opens_is_a_traced_refusal(db, tenant, keys, web):
    """An EncryptedID to a certificate that is not ours: xmlsec's plain error was a 500; now
    decryption_failed. One encrypted to our SP certificate signs in."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    for cert, status in ((keys.rogue.cert_pem, 403), (keys.sp.cert_pem, 303)):
        claims = claims_for(conn, in_response_to=start(web, conn))
        assertion = forge.sign(_encrypted_name_id(forge.assertion_xml(claims), cert), keys.idp)
        response = post_response(web, conn, forge.b64(forge.response_xml(claims, [assertion])))
        assert response.status_code == status, response.text
    assert [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")] == [
        "decryption_failed"]
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1


@pytest.mark.parametrize(("assertion_to", "name_id_to"), [
    (None, "sp_next"), ("sp", "sp_next"), ("sp_next", "sp"), ("sp_next", "sp_next")])
def test_an_encrypted_name_id_to_either_sp_key_signs_in_during_rollover(
        db, tenant, keys, web, assertion_to, name_id_to):
    """SP key rollover (``sp_next_key_file``): an IdP encrypts the NameID to either SP
    certificate, the old one or the new, in a plain or an EncryptedAssertion to either.
    Only the key that opened the assertion (the current one for a plain assertion) was
    tried for the EncryptedID: an IdP encrypting it to the other key was refused
    decryption_failed while both keys were configured. Now each login signs in as the
    NameID says."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    claims = claims_for(conn, in_response_to=start(web, conn))
    name_id_cert = getattr(keys, name_id_to).cert_pem
    assertion = forge.sign(_encrypted_name_id(forge.assertion_xml(claims), name_id_cert),
                           keys.idp)
    xml = forge.response_xml(claims, [assertion])
    if assertion_to is not None:
        xml = forge.encrypt_assertion(xml, getattr(keys, assertion_to).cert_pem)
    response = post_response(web, conn, forge.b64(xml))
    assert response.status_code == 303, rows(db, "SELECT reason, detail FROM sso_login_traces")
    assert rows(db, "SELECT count(*) AS n FROM sso_login_traces")[0].n == 0
    sessions = rows(db, "SELECT u.user_name FROM login_sessions s JOIN users u "
                        "ON u.id = s.user_id")
    assert [s.user_name for s in sessions] == [claims.name_id]
