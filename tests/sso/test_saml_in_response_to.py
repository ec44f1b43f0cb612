"""The signed assertion decides which AuthnRequest a Response answers, not the Response's
unsigned envelope (SAML Profiles §4.1.4.3: the bearer confirmation's InResponseTo equals the
request's ID, and is absent from an unsolicited Response). Only the assertion is signed by
most IdPs, so the Response's own InResponseTo is anyone's to remove or add."""

from __future__ import annotations

import re

from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start


def _trace(db) -> list[str]:
    return [t.reason for t in rows(db, "SELECT reason FROM sso_login_traces")]


def _sessions(db) -> int:
    return rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n


def test_an_answer_to_a_request_stripped_of_its_in_response_to_is_refused(db, tenant, keys,
                                                                            web, sso_app):
    """An attacker starts a login, and posts the signed answer from a victim's browser with
    the Response's InResponseTo removed, as if unsolicited, on a connection that allows
    IdP-initiated logins: it was accepted (no browser binding, no request claimed), now
    refused (unknown_in_response_to); the browser that started it still finishes."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], allow_idp_initiated=True)
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn)), keys.idp)
    stripped = re.sub(r'(<samlp:Response[^>]*?) InResponseTo="[^"]+"', r"\1", xml, count=1)
    assert stripped != xml
    victim = sso_app.test_client()
    refused = post_response(victim, conn, forge.b64(stripped))
    assert refused.status_code == 403, refused.text
    assert (_trace(db), _sessions(db)) == (["unknown_in_response_to"], 0)
    assert rows(db, "SELECT count(*) AS n FROM saml_seen_assertions")[0].n == 0
    assert post_response(web, conn, forge.b64(xml)).status_code == 303
    assert _sessions(db) == 1


def test_an_unsolicited_assertion_wrapped_as_an_answer_is_refused(db, tenant, keys, web):
    """A signed unsolicited assertion (no InResponseTo in its bearer confirmation) put in a
    Response naming a request this browser started, on a connection that refuses IdP-initiated
    logins: it was accepted, now refused (unsolicited_response), and the request stays open."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    request_id = start(web, conn)
    unsolicited = forge.sign(forge.assertion_xml(claims_for(conn)), keys.idp)
    xml = forge.response_xml(claims_for(conn, in_response_to=request_id), [unsolicited])
    refused = post_response(web, conn, forge.b64(xml))
    assert refused.status_code == 403, refused.text
    assert (_trace(db), _sessions(db)) == (["unsolicited_response"], 0)
    assert rows(db, "SELECT count(*) AS n FROM saml_requests WHERE used_at IS NULL")[0].n == 1
    answer = forge.signed_response(claims_for(conn, in_response_to=request_id), keys.idp)
    assert post_response(web, conn, forge.b64(answer)).status_code == 303
