"""SAML times with a zone offset (``2030-01-01T00:00:00+01:00``): valid xs:dateTime, but
SAML Core §1.3.3 wants UTC without a zone, and python3-saml cannot read them (it raises a
bare Exception, not its validation error).

In the Conditions or the bearer confirmation they are read before the signature is checked,
so anyone's unsigned Response made the ACS a 500 (no trace, no failed-authentication count);
now it is refused as ``malformed_response``, traced. In a signed Response's AuthnInstant
(read by Roster for the login's auth_time) the login made a 500; now the login goes on
without it, as with any unreadable AuthnInstant."""

from __future__ import annotations

import re

import pytest

from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start

ZONED = "2030-01-01T00:00:00+01:00"
PLACES = {"conditions": r'(<saml:Conditions NotBefore=")[^"]+',
          "confirmation": r'(<saml:SubjectConfirmationData NotOnOrAfter=")[^"]+',
          "authn_instant": r'(AuthnInstant=")[^"]+'}


def _assertion(db, tenant, keys, web, place: str):
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    claims = claims_for(conn, in_response_to=start(web, conn))
    xml = re.sub(PLACES[place], r"\g<1>" + ZONED, forge.assertion_xml(claims))
    return conn, claims, xml


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("place", ["conditions", "confirmation"])
def test_a_zoned_time_in_the_conditions_or_confirmation_is_a_traced_refusal(
        db, tenant, keys, web, place, signed):
    """Refused (403, trace ``malformed_response`` naming the time), no session."""
    conn, claims, xml = _assertion(db, tenant, keys, web, place)
    body = forge.response_xml(claims, [forge.sign(xml, keys.idp) if signed else xml])
    resp = post_response(web, conn, forge.b64(body))
    assert resp.status_code == 403, resp.text
    [trace] = rows(db, "SELECT reason, detail FROM sso_login_traces")
    assert trace.reason == "malformed_response"
    assert ZONED in trace.detail
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0


def test_a_zoned_authn_instant_in_a_signed_response_still_signs_in(db, tenant, keys, web):
    """The signed Response is valid otherwise: signed in (303), no trace."""
    conn, claims, xml = _assertion(db, tenant, keys, web, "authn_instant")
    body = forge.response_xml(claims, [forge.sign(xml, keys.idp)])
    resp = post_response(web, conn, forge.b64(body))
    assert resp.status_code == 303, resp.text
    assert rows(db, "SELECT count(*) AS n FROM sso_login_traces")[0].n == 0
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1
