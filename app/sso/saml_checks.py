"""Checks of a validated SAML Response that python3-saml leaves out or does loosely:
the exact Destination and Recipient, and the assertion's audience restrictions; and the
reading of its subject, which python3-saml refuses only when asked.

Each runs after python3-saml's strict validation, on its own view of the signed (and
decrypted) assertion, and raises ``LoginFailed`` with the trace reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from lxml import etree
from onelogin.saml2.constants import OneLogin_Saml2_Constants
from onelogin.saml2.errors import OneLogin_Saml2_ValidationError as VE
from onelogin.saml2.response import OneLogin_Saml2_Response
from onelogin.saml2.utils import OneLogin_Saml2_Utils
from onelogin.saml2.xml_utils import OneLogin_Saml2_XML

from app.sso.outcome import LoginFailed

_NS = {"saml": "urn:oasis:names:tc:SAML:2.0:assertion"}
_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"


def exact_addresses(response: OneLogin_Saml2_Response, acs: str,
                    in_response_to: str | None) -> None:
    """Destination and Recipient name this ACS exactly. python3-saml skips a missing one,
    reads Destination as a prefix and Recipient as a substring of the ACS URL, so
    ``https://evil.example/?x=<ACS>`` passed. Bindings §3.5.5.2: a signed Response's
    Destination is required and is the ACS; Profiles §4.1.4.2: a bearer confirmation has a
    Recipient (the ACS) and a NotOnOrAfter.

    ``in_response_to``: the request the Response says it answers (None: unsolicited). The
    bearer confirmation of the signed assertion must say the same (Profiles §4.1.4.3: its
    InResponseTo is the request's ID, and absent when unsolicited). python3-saml compares
    them only when both are there, and the Response around the assertion is usually
    unsigned: an answer stripped of it passed as unsolicited (no request claimed, no
    browser binding), and an unsolicited assertion wrapped in one naming a request passed
    where IdP-initiated logins are off."""
    root = response.document
    destination = root.get("Destination")
    signed = root.find(f"{{{OneLogin_Saml2_Constants.NS_DS}}}Signature") is not None
    if (destination is None and signed) or (destination is not None and destination != acs):
        raise LoginFailed("destination_mismatch", f"the Response's Destination is "
                          f"{destination!r}, not this connection's ACS")
    # python3-saml's own query of the validated (and decrypted) assertion.
    answers: set[str | None] = set()
    for confirmation in response._query_assertion("/saml:Subject/saml:SubjectConfirmation"):
        if confirmation.get("Method") != _BEARER:
            continue
        for data in confirmation.iterfind("saml:SubjectConfirmationData", _NS):
            if data.get("Recipient") == acs and data.get("NotOnOrAfter"):
                if data.get("InResponseTo") == in_response_to:
                    return
                answers.add(data.get("InResponseTo"))
    if None in answers:
        raise LoginFailed("unsolicited_response", f"the assertion answers no request, but "
                          f"the Response says it answers {in_response_to}")
    if answers:
        raise LoginFailed("unknown_in_response_to", f"the assertion answers request "
                          f"{sorted(a or '' for a in answers)[0]}, but the Response names "
                          f"{in_response_to or 'none'}")
    raise LoginFailed("recipient_mismatch", "no bearer SubjectConfirmationData names this "
                      "ACS as its Recipient, with a NotOnOrAfter")


def audience_restricted(response: OneLogin_Saml2_Response, entity_id: str) -> None:
    """The assertion is addressed to this SP. Profiles §4.1.4.2: an assertion with a bearer
    confirmation MUST have an ``<AudienceRestriction>`` naming the SP; Core §2.5.1.4: each
    ``<AudienceRestriction>`` must be met on its own (its audiences are an OR, several
    restrictions an AND). python3-saml accepts an assertion without any, and pools the
    audiences of all restrictions, so one naming only another SP passed beside ours."""
    restrictions = response._query_assertion("/saml:Conditions/saml:AudienceRestriction")
    if not restrictions:
        raise LoginFailed("audience_mismatch", "the assertion has no AudienceRestriction")
    for restriction in restrictions:
        audiences = [OneLogin_Saml2_XML.element_text(a)
                     for a in restriction.iterfind("saml:Audience", _NS)]
        if entity_id not in audiences:
            raise LoginFailed("audience_mismatch", "an AudienceRestriction of the assertion "
                              "does not name this SP's entity id")


# python3-saml's refusals while it reads the subject -> the reason in the login trace.
_SUBJECT_REASONS: dict[int, str] = {
    VE.NO_NAMEID: "missing_attribute", VE.EMPTY_NAMEID: "missing_attribute",
    VE.SP_NAME_QUALIFIER_NAME_MISMATCH: "audience_mismatch",
    VE.DUPLICATED_ATTRIBUTE_NAME_FOUND: "malformed_response",
}


def subject_of(response: OneLogin_Saml2_Response, sp_keys: Sequence[str] = (),
               ) -> tuple[dict[str, str], dict[str, list[str]]]:
    """The validated assertion's NameID data and attributes (SAML Core §2.2.3, §2.7.3).

    python3-saml refuses some only when they are read, after ``is_valid``: a missing or
    empty NameID, an ``SPNameQualifier`` naming another SP, an Attribute ``Name`` given
    twice; and an ``EncryptedID`` that does not decrypt raises a plain error. Read before
    the assertion is used up, each is a refusal (it was a 500, untraced).

    ``sp_keys``: every SP private key (PEM) an ``EncryptedID`` may be encrypted to
    (:func:`open_encrypted_id`)."""
    open_encrypted_id(response, sp_keys)
    try:
        nameid = response.get_nameid_data()
        attributes = response.get_attributes()
    except VE as exc:
        raise LoginFailed(_SUBJECT_REASONS.get(exc.code, "invalid_response"),
                          str(exc)) from None
    except Exception as exc:  # xmlsec's plain errors on an EncryptedID no key opens
        raise LoginFailed("decryption_failed",
                          f"the NameID cannot be decrypted: {exc}"[:500]) from None
    return nameid, {k: [str(v) for v in vals] for k, vals in attributes.items()}


def open_encrypted_id(response: OneLogin_Saml2_Response, sp_keys: Sequence[str]) -> None:
    """Put the NameID of the validated assertion's ``EncryptedID`` (SAML Core §2.2.4) in its
    place, decrypted with the first of ``sp_keys`` that opens it; left as it is when none
    does (reading it is then the ``decryption_failed`` refusal).

    During an SP key rollover an IdP encrypts to the current or the next certificate, the
    old or the new key. python3-saml decrypts an EncryptedID only with the key of the
    settings the Response was read with, the one that opened an EncryptedAssertion (the
    current one for a plain assertion): an EncryptedID to the other key was refused while
    both were configured. The signature was checked over the encrypted form by then."""
    found = response._query_assertion("/saml:Subject/saml:EncryptedID/xenc:EncryptedData")
    if not found:
        return
    wrapper = found[0].getparent()
    for key in sp_keys:
        try:
            name_id = OneLogin_Saml2_Utils.decrypt_element(found[0], key)  # on a copy
        except Exception:  # noqa: S112 - xmlsec's plain errors on a key that does not fit
            continue
        # xmlsec parses the plaintext out of context: its tag reads "saml:NameID", no
        # namespace. python3-saml takes the decrypted element's text and attributes as
        # the NameID's whatever its name; so does the element put in its place.
        if wrapper is not None and wrapper.getparent() is not None:
            plain = etree.Element(f"{{{_NS['saml']}}}NameID",
                                  {str(k): str(v) for k, v in name_id.attrib.items()})
            plain.text = OneLogin_Saml2_XML.element_text(name_id)
            wrapper.getparent().replace(wrapper, plain)
        return
