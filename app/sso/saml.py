"""SAML 2.0 Web Browser SSO on python3-saml: settings, AuthnRequests, Response validation.

python3-saml checks signatures, audience, destination, recipient and time conditions; this
module adds what it does not do: InResponseTo bound to a request we issued and not yet used,
a replay cache of assertion ids in the database, and key rollover for decryption (and
app/sso/saml_checks.py the exact addresses and audiences).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as VE
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.settings import OneLogin_Saml2_Settings
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import utcnow
from app.models.sso import SamlRequest, SeenAssertion, SsoConnection
from app.sso.keys import KeyPair, SpKeys
from app.sso.outcome import LoginFailed
from app.sso.saml_checks import audience_restricted, exact_addresses, subject_of

_NS = {"ds": "http://www.w3.org/2000/09/xmldsig#",
       "samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
       "saml": "urn:oasis:names:tc:SAML:2.0:assertion"}

# python3-saml validation codes -> the reason recorded in the login trace.
_REASONS: dict[int, str] = {
    VE.NO_SIGNED_ASSERTION: "unsigned_assertion", VE.NO_SIGNATURE_FOUND: "unsigned_assertion",
    VE.INVALID_SIGNATURE: "bad_signature",
    VE.WRONG_NUMBER_OF_ASSERTIONS: "signature_wrapping",
    VE.WRONG_SIGNED_ELEMENT: "signature_wrapping",
    VE.ID_NOT_FOUND_IN_SIGNED_ELEMENT: "signature_wrapping",
    VE.DUPLICATED_ID_IN_SIGNED_ELEMENTS: "signature_wrapping",
    VE.INVALID_SIGNED_ELEMENT: "signature_wrapping",
    VE.DUPLICATED_REFERENCE_IN_SIGNED_ELEMENTS: "signature_wrapping",
    VE.UNEXPECTED_SIGNED_ELEMENTS: "signature_wrapping",
    VE.WRONG_NUMBER_OF_SIGNATURES_IN_RESPONSE: "signature_wrapping",
    VE.WRONG_NUMBER_OF_SIGNATURES_IN_ASSERTION: "signature_wrapping",
    VE.WRONG_NUMBER_OF_SIGNATURES: "signature_wrapping",
    VE.INVALID_XML_FORMAT: "malformed_response",
    VE.ASSERTION_EXPIRED: "expired", VE.RESPONSE_EXPIRED: "expired",
    VE.SESSION_EXPIRED: "expired", VE.ASSERTION_TOO_EARLY: "not_yet_valid",
    VE.WRONG_AUDIENCE: "audience_mismatch",
    VE.WRONG_DESTINATION: "destination_mismatch", VE.EMPTY_DESTINATION: "destination_mismatch",
    VE.WRONG_SUBJECTCONFIRMATION: "recipient_mismatch",
    VE.WRONG_INRESPONSETO: "unknown_in_response_to",
    VE.WRONG_ISSUER: "wrong_issuer", VE.ISSUER_MULTIPLE_IN_RESPONSE: "wrong_issuer",
    VE.ISSUER_NOT_FOUND_IN_ASSERTION: "wrong_issuer",
    VE.STATUS_CODE_IS_NOT_SUCCESS: "idp_error",
    VE.DEPRECATED_SIGNATURE_METHOD: "weak_algorithm", VE.DEPRECATED_DIGEST_METHOD: "weak_algorithm",
}


@dataclass(frozen=True)
class SpUrls:
    """The SP endpoints of one connection, under the deployment's public base URL."""

    entity_id: str
    acs: str
    slo: str

    @classmethod
    def of(cls, base_url: str, connection_id: str) -> SpUrls:
        """Endpoints of ``connection_id`` (its metadata URL doubles as its entity id)."""
        root = f"{base_url.rstrip('/')}/sso/saml/{connection_id}"
        return cls(entity_id=f"{root}/metadata", acs=f"{root}/acs", slo=f"{root}/slo")


@dataclass(frozen=True)
class SamlIdentity:
    """What a valid, fresh, signed assertion says about the user."""

    name_id: str
    name_id_format: str | None
    attributes: dict[str, list[str]]
    assertion_id: str
    session_index: str | None
    relay_state: str | None
    idp_initiated: bool
    extra: dict[str, Any] = field(default_factory=dict)
    authn_instant: datetime | None = None  # when the IdP authenticated the user


def saml_settings(conn: SsoConnection, urls: SpUrls, pair: KeyPair | None,
                  next_pair: KeyPair | None = None, *, logout: bool = False,
                  metadata: bool = False) -> OneLogin_Saml2_Settings:
    """python3-saml settings for one connection: strict, signed assertions required.

    ``logout``: single logout messages must be signed both ways (SAML Profiles §4.4.3.4).
    ``metadata``: settings only to write the SP metadata, whose SP certificates are then
    offered for encryption too (python3-saml adds ``use="encryption"`` KeyDescriptors only
    when assertions must be encrypted; Roster decrypts them but takes plain ones too).
    """
    sp: dict[str, Any] = {
        "entityId": urls.entity_id,
        "assertionConsumerService": {"url": urls.acs,
                                     "binding": OneLogin_Saml2_Constants.BINDING_HTTP_POST},
        "singleLogoutService": {"url": urls.slo,
                                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
        "NameIDFormat": OneLogin_Saml2_Constants.NAMEID_UNSPECIFIED,
    }
    if pair is not None:
        sp["x509cert"], sp["privateKey"] = pair.cert_pem, pair.key_pem
    if next_pair is not None:
        sp["x509certNew"] = next_pair.cert_pem
    idp: dict[str, Any] = {
        "entityId": conn.idp_entity_id or "",
        "singleSignOnService": {"url": conn.idp_sso_url or "",
                                "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT},
        "x509certMulti": {"signing": list(conn.idp_certs)},
    }
    if conn.idp_slo_url:
        idp["singleLogoutService"] = {"url": conn.idp_slo_url,
                                      "binding": OneLogin_Saml2_Constants.BINDING_HTTP_REDIRECT}
    security = {
        "authnRequestsSigned": bool(conn.sign_requests and pair is not None),
        "wantAssertionsSigned": True, "wantMessagesSigned": logout,
        "logoutRequestSigned": logout and pair is not None,
        "logoutResponseSigned": logout and pair is not None,
        "wantNameId": True, "requestedAuthnContext": False,
        "wantAssertionsEncrypted": metadata and pair is not None,
        "rejectDeprecatedAlgorithm": True, "wantXMLValidation": True,
        "signatureAlgorithm": OneLogin_Saml2_Constants.RSA_SHA256,
        "digestAlgorithm": OneLogin_Saml2_Constants.SHA256,
    }
    return OneLogin_Saml2_Settings({"strict": True, "debug": False, "sp": sp, "idp": idp,
                                    "security": security}, sp_validation_only=not conn.idp_certs)


def sp_metadata(conn: SsoConnection, urls: SpUrls, keys: SpKeys) -> str:
    """SP metadata of one connection (SAML Metadata §2.4.4): the current and next certs,
    each for signing and for encryption (§2.4.1.1), so an IdP may encrypt to either.

    No ``validUntil`` (§2.3.1: when the metadata expires): python3-saml stamps two days
    ahead, and an IdP that imported the file (SimpleSAMLphp keeps it as the SP's
    ``expire``, Shibboleth refuses expired metadata) dropped the SP two days later,
    though nothing in it expires. ``cacheDuration`` stays, for IdPs that read the URL."""
    settings = saml_settings(conn, urls, keys.current, keys.next, metadata=True)
    xml = settings.get_sp_metadata()
    root = etree.fromstring(xml if isinstance(xml, bytes) else xml.encode())
    root.attrib.pop("validUntil", None)
    return str(etree.tostring(root, encoding="unicode"))


def request_data(url: str, post: dict[str, str] | None = None,
                  get: dict[str, str] | None = None) -> dict[str, Any]:
    """The request as python3-saml sees it, built from our public URL, not the Host header."""
    parts = urlsplit(url)
    return {"https": "on" if parts.scheme == "https" else "off", "http_host": parts.netloc,
            "script_name": parts.path, "get_data": get or {}, "post_data": post or {}}


def start_login(session: Session, conn: SsoConnection, urls: SpUrls, keys: SpKeys,
                relay_state: str | None, ttl_seconds: int, *,
                force_authn: bool = False) -> tuple[str, str]:
    """Build an AuthnRequest (SAML Core §3.4.1), remember its id; the redirect URL and the
    request's id. ``force_authn``: ``ForceAuthn="true"``, the IdP authenticates anew."""
    auth = OneLogin_Saml2_Auth(request_data(urls.acs),
                               saml_settings(conn, urls, keys.current))
    # The return URL stays in our table; RelayState is short and opaque, as SAML Bindings
    # §3.4.3 allows at most 80 bytes and some IdPs cut longer values.
    url = auth.login(return_to=secrets.token_urlsafe(12), force_authn=force_authn)
    now = utcnow()
    request_id = auth.get_last_request_id()
    session.add(SamlRequest(id=request_id, connection_id=conn.id,
                            relay_state=relay_state, created_at=now,
                            expires_at=now + timedelta(seconds=ttl_seconds)))
    return url, request_id


def decode_response_xml(saml_response: str) -> etree._Element | None:
    """Parse the posted Response for tracing and InResponseTo (no trust implied)."""
    try:
        raw = base64.b64decode(saml_response, validate=False)
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
        return etree.fromstring(raw, parser)
    except (ValueError, etree.XMLSyntaxError):
        return None


def _claim_request(session: Session, conn: SsoConnection, in_response_to: str) -> SamlRequest:
    """Mark the AuthnRequest answered; refuse unknown, foreign, expired or reused ids."""
    now = utcnow()
    claimed = session.execute(
        update(SamlRequest)
        .where(SamlRequest.id == in_response_to, SamlRequest.connection_id == conn.id,
               SamlRequest.used_at.is_(None), SamlRequest.expires_at > now)
        .values(used_at=now)
    ).rowcount
    if claimed != 1:
        known = session.get(SamlRequest, in_response_to)
        if known is not None and known.connection_id == conn.id and known.used_at is not None:
            raise LoginFailed("replay", "the request this Response answers was already used")
        if known is not None and known.connection_id == conn.id:
            raise LoginFailed("expired", "the request this Response answers has expired")
        raise LoginFailed("unknown_in_response_to",
                          "the Response answers no request this server issued")
    return session.execute(select(SamlRequest).where(SamlRequest.id == in_response_to)
                           .execution_options(populate_existing=True)).scalar_one()


_ID_MAX = 200  # saml_seen_assertions.assertion_id


def _valid_until(response: OneLogin_Saml2_Response) -> int | None:
    """The latest moment the assertion would still be accepted: its bearer confirmation's
    NotOnOrAfter or its Conditions' (SAML Core §2.5.1), whichever is later. The replay
    cache keeps its id until then; with the confirmation's alone, an assertion whose
    Conditions ran for hours could be posted again once the cache row was purged."""
    times = [response.get_assertion_not_on_or_after()]
    # python3-saml's own query of the validated (and decrypted) assertion.
    for node in response._query_assertion("/saml:Conditions"):
        if node.get("NotOnOrAfter"):
            times.append(OneLogin_Saml2_Utils.parse_SAML_to_time(node.get("NotOnOrAfter")))
    known = [t for t in times if t]
    return max(known) if known else None


def _remember_assertion(session: Session, conn: SsoConnection, assertion_id: str,
                        not_on_or_after: int | None, skew: int) -> None:
    """Insert the assertion id into the replay cache; a second sighting is a replay."""
    now = utcnow()
    keep = timedelta(seconds=max(0, (not_on_or_after or 0) - int(now.timestamp())) + skew)
    keep = max(keep, timedelta(hours=1))
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    inserted = session.execute(
        insert(SeenAssertion)
        .values(connection_id=conn.id, assertion_id=assertion_id, seen_at=now,
                expires_at=now + keep)
        .on_conflict_do_nothing(index_elements=["connection_id", "assertion_id"])
        .returning(SeenAssertion.assertion_id)
    ).first()
    if inserted is None:
        raise LoginFailed("replay", f"assertion {assertion_id} was already used")


def _confirmation_reason(doc: etree._Element) -> str:
    """Why no bearer SubjectConfirmation fitted (SAML Profiles §4.1.4.2), for the trace.

    python3-saml reports one error for a wrong Recipient and for a confirmation window
    that has passed; it checks that window without the clock skew, which applies to the
    Conditions only. The (unverified) document tells the two apart for the admin.
    """
    now = OneLogin_Saml2_Utils.now()
    path = "saml:Assertion/saml:Subject/saml:SubjectConfirmation/saml:SubjectConfirmationData"
    for data in doc.iterfind(path, _NS):
        try:
            if data.get("NotOnOrAfter") and \
                    OneLogin_Saml2_Utils.parse_SAML_to_time(data.get("NotOnOrAfter")) <= now:
                return "expired"
            if data.get("NotBefore") and \
                    OneLogin_Saml2_Utils.parse_SAML_to_time(data.get("NotBefore")) > now:
                return "not_yet_valid"
        except ValueError:
            continue
    return "recipient_mismatch"


def _embedded_certs(doc: etree._Element) -> set[str]:
    return {"".join((c.text or "").split())
            for c in doc.iterfind(".//ds:X509Certificate", _NS)}


def _validated(conn: SsoConnection, urls: SpUrls, keys: SpKeys, saml_response: str,
               request_id: str | None) -> OneLogin_Saml2_Response:
    """Run python3-saml's strict validation, trying each SP key for encrypted assertions."""
    pairs: list[KeyPair | None] = list(keys.decryption_pairs()) or [None]
    last_error: Exception | None = None
    for pair in pairs:
        try:
            response = OneLogin_Saml2_Response(saml_settings(conn, urls, pair), saml_response)
        except VE as exc:
            raise LoginFailed(_REASONS.get(exc.code, "invalid_response"), str(exc)) from None
        except Exception as exc:  # xmlsec raises plain errors on a key that does not fit
            last_error = exc
            continue
        try:
            response.is_valid(request_data(urls.acs, {"SAMLResponse": saml_response}),
                              request_id, raise_exceptions=True)
        except VE as exc:
            raise LoginFailed(_REASONS.get(exc.code, "invalid_response"), str(exc)) from None
        except Exception as exc:
            # python3-saml raises a bare Exception on a time it cannot read, e.g. one with
            # a zone offset (SAML Core §1.3.3: UTC, no zone), checked before the signature:
            # anyone's unsigned Response made a 500, untraced.
            raise LoginFailed("malformed_response",
                              f"the Response cannot be read: {exc}"[:500]) from None
        exact_addresses(response, urls.acs, request_id)
        audience_restricted(response, urls.entity_id)
        return response
    raise LoginFailed("decryption_failed", f"no SP key decrypts the assertion: {last_error}")


def consume_response(session: Session, conn: SsoConnection, urls: SpUrls, keys: SpKeys,
                     saml_response: str, posted_relay_state: str | None,
                     skew_seconds: int, started: frozenset[str] | None) -> SamlIdentity:
    """Validate a posted Response end to end (SAML Core §3.2.2, Profiles §4.1.4.3).
    ``started``: the request ids the posting browser started (app/sso/saml_binding.py);
    None when the binding is not enforced."""
    doc = decode_response_xml(saml_response)
    if doc is None or doc.tag != f"{{{_NS['samlp']}}}Response":
        raise LoginFailed("malformed_response", "SAMLResponse is not a SAML Response")
    if doc.getroottree().docinfo.doctype:
        # No IdP sends a DTD (entity tricks do); python3-saml refuses it too, but that was
        # traced as decryption_failed.
        raise LoginFailed("malformed_response", "the Response holds a DOCTYPE")
    in_response_to = doc.get("InResponseTo")
    pending = _claim_request(session, conn, in_response_to) if in_response_to else None
    if pending is not None and started is not None and pending.id not in started:
        # The refusal rolls the claim back: the browser that started it can still finish.
        raise LoginFailed("browser_mismatch", "the Response answers a sign-in this browser "
                          "did not start (login CSRF, or cookies blocked)")
    if pending is None and not conn.allow_idp_initiated:
        raise LoginFailed("unsolicited_response",
                          "IdP-initiated login is not enabled for this connection")
    # python3-saml reads the drift from a class constant; the deployment sets it once.
    OneLogin_Saml2_Constants.ALLOWED_CLOCK_DRIFT = skew_seconds
    try:
        response = _validated(conn, urls, keys, saml_response, in_response_to)
    except LoginFailed as exc:
        if exc.reason == "recipient_mismatch":
            raise LoginFailed(_confirmation_reason(doc), exc.detail) from None
        embedded = _embedded_certs(doc)
        if exc.reason == "bad_signature" and embedded and not embedded & set(conn.idp_certs):
            raise LoginFailed("untrusted_certificate",
                              "the Response is signed with a certificate that is not "
                              "configured for this connection") from None
        raise
    nameid, attributes = subject_of(response,
                                    [pair.key_pem for pair in keys.decryption_pairs()])
    assertion_id = response.get_assertion_id()
    if len(assertion_id) > _ID_MAX:
        # The replay cache could not hold it (PostgreSQL refused it: a 500), and no IdP
        # needs more: refused and traced the same way on both databases.
        raise LoginFailed("malformed_response", f"the assertion's ID is longer than "
                          f"{_ID_MAX} characters")
    _remember_assertion(session, conn, assertion_id, _valid_until(response), skew_seconds)
    return SamlIdentity(
        name_id=nameid.get("Value", ""), name_id_format=nameid.get("Format"),
        attributes=attributes,
        assertion_id=assertion_id, session_index=response.get_session_index(),
        relay_state=pending.relay_state if pending else posted_relay_state,
        idp_initiated=pending is None, authn_instant=_authn_instant(response))


def _authn_instant(response: OneLogin_Saml2_Response) -> datetime | None:
    """The AuthnStatement's AuthnInstant (SAML Core §2.7.2): when the IdP authenticated the
    user, which an IdP reusing its own session reports as that session's start."""
    for node in response._query_assertion("/saml:AuthnStatement"):
        raw = node.get("AuthnInstant")
        if raw:
            try:
                return datetime.fromtimestamp(OneLogin_Saml2_Utils.parse_SAML_to_time(raw),
                                              UTC)
            # parse_SAML_to_time raises a bare Exception on a time it cannot read (one with
            # a zone offset): the signed login of an IdP that sends one made a 500.
            except Exception:
                return None
    return None
