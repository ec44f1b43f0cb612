"""The SAML attack corpus: each hostile Response is refused, traced with its own reason,
and leaves no session behind."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta

import pytest

from app import create_app
from tests.conftest import rows
from tests.sso import forge
from tests.sso.conftest import claims_for, post_response, provision, saml_connection, start


def _refused(db, resp, reason: str) -> None:
    """403 page with a correlation id that names a trace carrying ``reason``; no session."""
    assert resp.status_code == 403, resp.text
    match = re.search(r'id=correlation-id>([0-9a-f-]{36})<', resp.text)
    assert match, resp.text
    trace = rows(db, "SELECT reason, payload FROM sso_login_traces WHERE id = :i",
                 i=match.group(1))
    assert [t.reason for t in trace] == [reason]
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0


def _refused_keeping(db, resp, reason: str) -> None:
    """403 whose correlation id names a trace with ``reason`` (sessions may exist)."""
    assert resp.status_code == 403, resp.text
    match = re.search(r'id=correlation-id>([0-9a-f-]{36})<', resp.text)
    assert match, resp.text
    found = rows(db, "SELECT reason FROM sso_login_traces WHERE id = :i", i=match.group(1))
    assert [t.reason for t in found] == [reason]


def _setup(db, tenant, keys, web):
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    return conn, claims_for(conn, in_response_to=start(web, conn))


def test_unsigned_assertion_is_refused(db, tenant, keys, web):
    """No signature anywhere: signed assertions are required."""
    conn, claims = _setup(db, tenant, keys, web)
    xml = forge.response_xml(claims, [forge.assertion_xml(claims)])
    _refused(db, post_response(web, conn, forge.b64(xml)), "unsigned_assertion")


def test_signed_response_with_unsigned_assertion_is_refused(db, tenant, keys, web):
    """A signed Response does not stand in for the signed assertion we require."""
    conn, claims = _setup(db, tenant, keys, web)
    xml = forge.sign(forge.response_xml(claims, [forge.assertion_xml(claims)]), keys.idp)
    _refused(db, post_response(web, conn, forge.b64(xml)), "unsigned_assertion")


def test_xsw_wrapped_assertion_is_refused(db, tenant, keys, web):
    """XSW: the signed original hidden inside the signature, an evil assertion in its place."""
    conn, claims = _setup(db, tenant, keys, web)
    doc = forge.parse(forge.signed_response(claims, keys.idp))
    original = doc.find("saml:Assertion", forge.NS)
    evil = forge.clone(original)
    evil.find("saml:Subject/saml:NameID", forge.NS).text = "mallory@acme.com"
    evil.remove(evil.find("ds:Signature", forge.NS))
    evil.set("ID", "_evil")
    signature = original.find("ds:Signature", forge.NS)
    holder = forge.clone(original)
    signature.getparent().remove(signature)
    original.getparent().replace(original, evil)
    evil.insert(1, signature)
    signature.append(holder)
    _refused(db, post_response(web, conn, forge.b64(forge.tostring(doc))), "signature_wrapping")


def test_unsigned_second_assertion_is_refused(db, tenant, keys, web):
    """XSW: a valid signed assertion followed by an unsigned one naming someone else."""
    conn, claims = _setup(db, tenant, keys, web)
    signed = forge.sign(forge.assertion_xml(claims), keys.idp)
    evil_claims = claims_for(conn, in_response_to=claims.in_response_to,
                             name_id="mallory@acme.com")
    xml = forge.response_xml(claims, [signed, forge.assertion_xml(evil_claims)])
    _refused(db, post_response(web, conn, forge.b64(xml)), "signature_wrapping")


def test_tampered_attribute_is_refused(db, tenant, keys, web):
    """Changing one attribute value after signing breaks the digest."""
    conn, claims = _setup(db, tenant, keys, web)
    xml = forge.signed_response(claims, keys.idp).replace(">Buyers<", ">Administrators<")
    assert ">Administrators<" in xml
    _refused(db, post_response(web, conn, forge.b64(xml)), "bad_signature")


def test_replayed_response_is_refused(db, tenant, keys, web):
    """The same Response posted twice logs in once (InResponseTo already answered)."""
    conn, claims = _setup(db, tenant, keys, web)
    body = forge.b64(forge.signed_response(claims, keys.idp))
    assert post_response(web, conn, body).status_code == 303
    rows_before = rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n
    resp = post_response(web, conn, body)
    assert resp.status_code == 403
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == rows_before == 1
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "replay"


def test_replayed_idp_initiated_assertion_is_refused_by_the_database_cache(db, tenant, keys,
                                                                           web):
    """Without InResponseTo, the assertion-id cache in the database stops the replay."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], allow_idp_initiated=True)
    body = forge.b64(forge.signed_response(claims_for(conn), keys.idp))
    assert post_response(web, conn, body).status_code in (200, 303)
    resp = post_response(web, conn, body)
    assert resp.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "replay"
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1


def test_a_response_one_node_accepted_is_refused_by_another(db, tenant, keys, web, sso_app):
    """Two app nodes on one database: the replay cache and the used request are shared."""
    node_b = create_app(copy.deepcopy(sso_app.config["ROSTER"]))
    node_b.extensions["roster.db"].dispose()
    node_b.extensions["roster.db"] = db
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], allow_idp_initiated=True)
    solicited = forge.b64(forge.signed_response(
        claims_for(conn, in_response_to=start(web, conn)), keys.idp))
    unsolicited = forge.b64(forge.signed_response(claims_for(conn), keys.idp))
    for body in (solicited, unsolicited):
        assert post_response(web, conn, body).status_code in (200, 303)
        _refused_keeping(db, post_response(node_b.test_client(), conn, body), "replay")
        sessions = rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n
        assert sessions == (1 if body is solicited else 2)


def test_expired_assertion_is_refused(db, tenant, keys, web):
    """NotOnOrAfter an hour ago is past any configured clock skew."""
    conn, claims = _setup(db, tenant, keys, web)
    claims.not_before, claims.not_on_or_after = timedelta(hours=-2), timedelta(hours=-1)
    xml = forge.signed_response(claims, keys.idp)
    _refused(db, post_response(web, conn, forge.b64(xml)), "expired")


def test_clock_skew_is_the_configured_allowance(db, tenant, keys, web, sso_app, monkeypatch):
    """NotBefore 20 s ahead passes with 60 s of skew and is refused with 0 s; 3 minutes
    ahead is refused with 60 s."""
    conn, claims = _setup(db, tenant, keys, web)
    claims.not_before = timedelta(seconds=20)
    early = forge.signed_response(claims, keys.idp)
    assert post_response(web, conn, forge.b64(early)).status_code == 303
    claims = claims_for(conn, in_response_to=start(web, conn))
    claims.not_before = timedelta(minutes=3)
    resp = post_response(web, conn, forge.b64(forge.signed_response(claims, keys.idp)))
    assert resp.status_code == 403
    monkeypatch.setitem(sso_app.config["ROSTER"]["sso"], "clock_skew_seconds", 0)
    claims = claims_for(conn, in_response_to=start(web, conn))
    claims.not_before = timedelta(seconds=20)
    resp = post_response(web, conn, forge.b64(forge.signed_response(claims, keys.idp)))
    assert resp.status_code == 403
    reasons = [r.reason for r in rows(db, "SELECT reason FROM sso_login_traces")]
    assert reasons == ["not_yet_valid", "not_yet_valid"]
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 1


def test_a_lapsed_bearer_confirmation_is_traced_as_expired(db, tenant, keys, web):
    """SubjectConfirmationData NotOnOrAfter 20 s ago: refused (python3-saml checks it without
    skew), and the trace says expired rather than a wrong recipient."""
    conn, claims = _setup(db, tenant, keys, web)
    claims.not_on_or_after = timedelta(seconds=-20)
    xml = forge.signed_response(claims, keys.idp)
    _refused(db, post_response(web, conn, forge.b64(xml)), "expired")


def test_wrong_audience_is_refused(db, tenant, keys, web):
    """An assertion for another SP (another connection's entity id) is not for us."""
    conn, claims = _setup(db, tenant, keys, web)
    claims.audience = "https://other-sp.example/metadata"
    xml = forge.signed_response(claims, keys.idp)
    _refused(db, post_response(web, conn, forge.b64(xml)), "audience_mismatch")


@pytest.mark.parametrize("restrictions", [[], [["https://other-sp.example/metadata"], []]])
def test_an_assertion_not_restricted_to_us_is_refused(db, tenant, keys, web, restrictions):
    """Profiles §4.1.4.2: the assertion MUST have an AudienceRestriction naming us. No
    restriction at all (an IdP's assertion good for any SP that trusts it), or one naming
    only another SP beside one naming us (Core §2.5.1.4: each restriction must be met):
    python3-saml took both; the second also gets its own Audience below."""
    conn, claims = _setup(db, tenant, keys, web)
    if restrictions:
        restrictions[1].append(claims.audience)
    claims.audience_restrictions = restrictions
    xml = forge.signed_response(claims, keys.idp)
    _refused(db, post_response(web, conn, forge.b64(xml)), "audience_mismatch")


def test_one_restriction_naming_us_among_other_audiences_is_accepted(db, tenant, keys, web):
    """Core §2.5.1.4: the audiences of one AudienceRestriction are an OR."""
    conn, claims = _setup(db, tenant, keys, web)
    claims.audience_restrictions = [["https://other-sp.example/metadata", claims.audience]]
    resp = post_response(web, conn, forge.b64(forge.signed_response(claims, keys.idp)))
    assert resp.status_code == 303, resp.text


def test_wrong_destination_is_refused(db, tenant, keys, web):
    """A Response addressed to another ACS URL is refused."""
    conn, claims = _setup(db, tenant, keys, web)
    xml = forge.signed_response(claims, keys.idp, destination="https://other-sp.example/acs")
    _refused(db, post_response(web, conn, forge.b64(xml)), "destination_mismatch")


def test_wrong_recipient_is_refused(db, tenant, keys, web):
    """SubjectConfirmationData Recipient must be our ACS."""
    conn, claims = _setup(db, tenant, keys, web)
    xml = forge.signed_response(claims, keys.idp).replace(
        f'Recipient="{claims.acs}"', 'Recipient="https://other-sp.example/acs"')
    # Re-sign so only the recipient is wrong, not the signature.
    doc = forge.parse(xml)
    assertion = doc.find("saml:Assertion", forge.NS)
    assertion.remove(assertion.find("ds:Signature", forge.NS))
    signed = forge.sign(forge.tostring(assertion), keys.idp)
    xml = forge.response_xml(claims, [signed])
    _refused(db, post_response(web, conn, forge.b64(xml)), "recipient_mismatch")


def test_unsolicited_response_with_unknown_in_response_to_is_refused(db, tenant, keys, web):
    """InResponseTo naming a request we never issued is refused, even if signed."""
    provision(db, tenant)
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], allow_idp_initiated=True)
    xml = forge.signed_response(claims_for(conn, in_response_to="_never_issued"), keys.idp)
    _refused(db, post_response(web, conn, forge.b64(xml)), "unknown_in_response_to")


def test_request_of_another_connection_does_not_answer(db, tenant, keys, web):
    """An AuthnRequest id issued for connection A cannot be used at connection B's ACS."""
    provision(db, tenant)
    first = saml_connection(db, tenant, [keys.idp.cert_b64])
    second = saml_connection(db, tenant, [keys.idp.cert_b64])
    request_id = start(web, first)
    xml = forge.signed_response(claims_for(second, in_response_to=request_id), keys.idp)
    _refused(db, post_response(web, second, forge.b64(xml)), "unknown_in_response_to")


def test_certificate_that_is_not_configured_is_refused(db, tenant, keys, web):
    """A well-formed signature by a key the connection does not trust is refused."""
    conn, claims = _setup(db, tenant, keys, web)
    xml = forge.signed_response(claims, keys.rogue)
    _refused(db, post_response(web, conn, forge.b64(xml)), "untrusted_certificate")


def test_garbage_is_refused_without_a_server_error(db, tenant, keys, web):
    """Not base64, not XML, or an empty form: a refused page and a trace, never a 500."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64])
    for body in ("!!!", forge.b64("<not-xml"), forge.b64("<a/>"), ""):
        resp = post_response(web, conn, body)
        assert resp.status_code == 403, body
    reasons = {r.reason for r in rows(db, "SELECT reason FROM sso_login_traces")}
    assert reasons == {"malformed_response"}


def test_trace_keeps_a_redacted_copy_of_the_response(db, tenant, keys, web):
    """The trace shows structure and attribute names; values are masked."""
    conn, claims = _setup(db, tenant, keys, web)
    xml = forge.signed_response(claims, keys.rogue)
    post_response(web, conn, forge.b64(xml))
    payload = rows(db, "SELECT payload FROM sso_login_traces")[0].payload
    if isinstance(payload, str):
        payload = json.loads(payload)
    response = payload["response"]
    assert response["in_response_to"] == claims.in_response_to
    assert response["attributes"]["email"] == ["a***@acme.com"]
    assert response["name_id"] == ["a***@acme.com"]
    assert "alice" not in str(payload)


def test_the_replay_cache_keeps_an_assertion_as_long_as_its_conditions_last(db, tenant, keys,
                                                                              web):
    """Conditions valid for 8 hours, the bearer confirmation for 5 minutes: the id is kept
    until the later of the two (it was kept an hour, so a purge made the assertion usable
    again for seven more)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    claims = claims_for(conn, in_response_to=start(web, conn))
    assertion = forge.assertion_xml(claims)
    later = (datetime.now(UTC) + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assertion = re.sub(r'(<saml:Conditions NotBefore="[^"]+" NotOnOrAfter=")[^"]+"',
                       rf'\g<1>{later}"', assertion)
    response = forge.response_xml(claims, [forge.sign(assertion, keys.idp)])
    assert post_response(web, conn, forge.b64(response)).status_code == 303
    [kept] = rows(db, "SELECT expires_at FROM saml_seen_assertions")
    expires = kept.expires_at  # text on SQLite (a raw query), a datetime on PostgreSQL
    expires = datetime.fromisoformat(expires) if isinstance(expires, str) else expires
    expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
    assert expires >= datetime.now(UTC) + timedelta(hours=7, minutes=55)


def test_an_assertion_id_no_column_can_hold_is_a_traced_refusal(db, tenant, keys, web):
    """An ID past 200 characters: PostgreSQL could not keep it in the replay cache (a 500);
    now refused and traced on both databases, nothing created."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    claims = claims_for(conn, in_response_to=start(web, conn))
    assertion = forge.sign(forge.assertion_xml(claims, "_" + "a" * 250), keys.idp)
    response = post_response(web, conn, forge.b64(forge.response_xml(claims, [assertion])))
    assert response.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "malformed_response"
    assert rows(db, "SELECT count(*) AS n FROM users")[0].n == 0


def test_a_response_posted_from_another_browser_is_login_csrf(db, tenant, keys, web, sso_app):
    """An attacker starts a login, signs in at the IdP as themselves and posts their own
    Response from the victim's browser: refused (browser_mismatch), nobody signed in; the
    browser that started the login still finishes it (the refusal claimed nothing)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    attacker = start(web, conn)
    response = forge.b64(forge.signed_response(
        claims_for(conn, in_response_to=attacker), keys.idp))
    victim = sso_app.test_client()
    refused = post_response(victim, conn, response)
    assert refused.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "browser_mismatch"
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0
    cookie = web.get_cookie("roster_saml_started", path="/sso/saml/")
    assert cookie is not None
    assert (cookie.http_only, cookie.same_site) == (True, "Lax")  # http here; https: None
    assert post_response(web, conn, response).status_code == 303


@pytest.mark.parametrize(("change", "reason"), [
    (lambda a, acs: a.replace(f'Recipient="{acs}"', f'Recipient="https://evil.example/?x={acs}"'),
     "recipient_mismatch"),
    (lambda a, acs: a.replace(f' Recipient="{acs}"', ""), "recipient_mismatch"),
    (lambda a, acs: re.sub(r'<saml:SubjectConfirmationData NotOnOrAfter="[^"]+" ',
                           "<saml:SubjectConfirmationData ", a), "recipient_mismatch"),
])
def test_the_recipient_is_this_acs_exactly_and_the_window_is_required(db, tenant, keys, web,
                                                                      change, reason):
    """python3-saml took a Recipient holding the ACS anywhere in it, and none at all, and
    a bearer confirmation without NotOnOrAfter (Profiles §4.1.4.2 requires both)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    claims = claims_for(conn, in_response_to=start(web, conn))
    assertion = forge.sign(change(forge.assertion_xml(claims), claims.acs), keys.idp)
    response = post_response(web, conn, forge.b64(forge.response_xml(claims, [assertion])))
    assert response.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == reason
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0


@pytest.mark.parametrize("sign_response", [False, True])
def test_the_destination_is_this_acs_exactly(db, tenant, keys, web, sign_response):
    """A Destination extending the ACS (a prefix match in python3-saml) is refused, and a
    signed Response must carry one (Bindings §3.5.5.2)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    claims = claims_for(conn, in_response_to=start(web, conn))
    xml = forge.signed_response(claims, keys.idp, destination=claims.acs + "-other/evil",
                                sign_response=sign_response)
    assert post_response(web, conn, forge.b64(xml)).status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "destination_mismatch"
    if sign_response:
        claims = claims_for(conn, in_response_to=start(web, conn))
        unsigned = forge.response_xml(claims, [forge.sign(forge.assertion_xml(claims),
                                                          keys.idp)])
        xml = forge.sign(re.sub(r' Destination="[^"]+"', "", unsigned), keys.idp)
        assert post_response(web, conn, forge.b64(xml)).status_code == 403
        assert [r.reason for r in rows(db, "SELECT reason FROM sso_login_traces")] == [
            "destination_mismatch", "destination_mismatch"]


def test_a_response_with_a_doctype_is_traced_as_malformed(db, tenant, keys, web):
    """An entity trick is refused before any parsing by python3-saml, and traced for what
    it is (it was traced as decryption_failed)."""
    conn = saml_connection(db, tenant, [keys.idp.cert_b64], login_policy="jit")
    xml = forge.signed_response(claims_for(conn, in_response_to=start(web, conn)), keys.idp)
    doctype = '<!DOCTYPE samlp:Response [<!ENTITY who "alice@acme.com">]>'
    response = post_response(web, conn, forge.b64(doctype + xml))
    assert response.status_code == 403
    assert rows(db, "SELECT reason FROM sso_login_traces")[0].reason == "malformed_response"
    assert rows(db, "SELECT count(*) AS n FROM login_sessions")[0].n == 0
