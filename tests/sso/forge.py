"""A scripted SAML IdP for attack tests: builds Responses and signs them with test keys.

Real logins are tested against SimpleSAMLphp; this builds the malformed and hostile
Responses an attacker would send (XSW, unsigned, tampered, replayed, expired ...).
"""

from __future__ import annotations

import base64
import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import xmlsec
from lxml import etree
from onelogin.saml2.utils import OneLogin_Saml2_Utils

from tests.sso.keys import TestKey

SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS = {"samlp": SAMLP, "saml": SAML, "ds": "http://www.w3.org/2000/09/xmldsig#"}
IDP_ENTITY = "https://idp.forge.test/metadata"
IDP_SSO = "https://idp.forge.test/sso"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
EMAIL_FORMAT = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"


def _t(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Claims:
    """What the forged assertion says, and the SP endpoints it is addressed to."""

    acs: str
    audience: str
    name_id: str = "alice@acme.com"
    name_id_format: str = EMAIL_FORMAT
    in_response_to: str | None = None
    attributes: dict[str, list[str]] = field(default_factory=lambda: {
        "email": ["alice@acme.com"], "givenName": ["Alice"], "sn": ["Archer"],
        "groups": ["Buyers"]})
    not_before: timedelta = timedelta(minutes=-1)
    not_on_or_after: timedelta = timedelta(minutes=5)
    issuer: str = IDP_ENTITY
    authn_age: timedelta = timedelta(0)  # how long ago the IdP authenticated the user
    # <AudienceRestriction> elements, each with its <Audience> values; None: [[audience]].
    audience_restrictions: list[list[str]] | None = None


def assertion_xml(c: Claims, assertion_id: str | None = None) -> str:
    """An unsigned Assertion (SAML Core §2.3.3) with subject, conditions and attributes."""
    now = datetime.now(UTC)
    aid = assertion_id or f"_a{uuid.uuid4().hex}"
    irt = f' InResponseTo="{c.in_response_to}"' if c.in_response_to else ""
    attrs = "".join(
        f'<saml:Attribute Name="{name}" NameFormat="{BASIC}">'
        + "".join(f'<saml:AttributeValue xmlns:xs="http://www.w3.org/2001/XMLSchema" '
                  f'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
                  f'xsi:type="xs:string">{v}</saml:AttributeValue>' for v in values)
        + "</saml:Attribute>" for name, values in c.attributes.items())
    restrictions = "".join(
        "<saml:AudienceRestriction>"
        + "".join(f"<saml:Audience>{a}</saml:Audience>" for a in audiences)
        + "</saml:AudienceRestriction>"
        for audiences in (c.audience_restrictions if c.audience_restrictions is not None
                          else [[c.audience]]))
    return (
        f'<saml:Assertion xmlns:saml="{SAML}" ID="{aid}" Version="2.0" IssueInstant="{_t(now)}">'
        f"<saml:Issuer>{c.issuer}</saml:Issuer>"
        f'<saml:Subject><saml:NameID Format="{c.name_id_format}">'
        f"{c.name_id}</saml:NameID>"
        f'<saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer">'
        f'<saml:SubjectConfirmationData NotOnOrAfter="{_t(now + c.not_on_or_after)}" '
        f'Recipient="{c.acs}"{irt}/></saml:SubjectConfirmation></saml:Subject>'
        f'<saml:Conditions NotBefore="{_t(now + c.not_before)}" '
        f'NotOnOrAfter="{_t(now + c.not_on_or_after)}">{restrictions}</saml:Conditions>'
        f'<saml:AuthnStatement AuthnInstant="{_t(now - c.authn_age)}" '
        f'SessionIndex="_s{uuid.uuid4().hex}">'
        f"<saml:AuthnContext><saml:AuthnContextClassRef>"
        f"urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
        f"</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"
        f"<saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>")


def sign(xml: str, key: TestKey) -> str:
    """Enveloped RSA-SHA256 signature over the element that holds the first Issuer."""
    signed = OneLogin_Saml2_Utils.add_sign(xml, key.key_pem, key.cert_pem)
    return signed.decode() if isinstance(signed, bytes) else signed


def response_xml(c: Claims, assertions: list[str], destination: str | None = None) -> str:
    """A Response (SAML Core §3.3.3) around already-built assertion XML."""
    now = datetime.now(UTC)
    irt = f' InResponseTo="{c.in_response_to}"' if c.in_response_to else ""
    body = "".join(a.split("?>", 1)[-1] if a.startswith("<?xml") else a for a in assertions)
    return (
        f'<samlp:Response xmlns:samlp="{SAMLP}" xmlns:saml="{SAML}" ID="_r{uuid.uuid4().hex}" '
        f'Version="2.0" IssueInstant="{_t(now)}" Destination="{destination or c.acs}"{irt}>'
        f"<saml:Issuer>{c.issuer}</saml:Issuer><samlp:Status><samlp:StatusCode "
        f'Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>{body}'
        f"</samlp:Response>")


def signed_response(c: Claims, key: TestKey, *, destination: str | None = None,
                    sign_response: bool = False) -> str:
    """The normal case: one assertion signed by ``key`` (optionally the Response too)."""
    xml = response_xml(c, [sign(assertion_xml(c), key)], destination)
    return sign(xml, key) if sign_response else xml


def encrypt_assertion(response: str, cert_pem: str) -> str:
    """Replace the Assertion with an EncryptedAssertion to ``cert_pem`` (AES-128-CBC, RSA-OAEP)."""
    doc = etree.fromstring(response.encode())
    encrypt_element(doc, doc.find("saml:Assertion", NS), "EncryptedAssertion", cert_pem)
    return etree.tostring(doc).decode()


def encrypt_element(doc: Any, element: Any, wrapper_name: str, cert_pem: str) -> None:
    """Wrap ``element`` of ``doc`` in a ``saml:{wrapper_name}`` and encrypt it there to
    ``cert_pem`` (AES-128-CBC, RSA-OAEP; SAML Core §2.2.4)."""
    wrapper = etree.Element(f"{{{SAML}}}{wrapper_name}")
    element.addprevious(wrapper)
    wrapper.append(element)
    template = xmlsec.template.encrypted_data_create(
        doc, xmlsec.constants.TransformAes128Cbc, type=xmlsec.constants.TypeEncElement,
        ns="xenc")
    xmlsec.template.encrypted_data_ensure_cipher_value(template)
    key_info = xmlsec.template.encrypted_data_ensure_key_info(template, ns="dsig")
    enc_key = xmlsec.template.add_encrypted_key(key_info, xmlsec.constants.TransformRsaOaep)
    xmlsec.template.encrypted_data_ensure_cipher_value(enc_key)
    manager = xmlsec.KeysManager()
    manager.add_key(xmlsec.Key.from_memory(cert_pem, xmlsec.constants.KeyDataFormatCertPem))
    ctx = xmlsec.EncryptionContext(manager)
    ctx.key = xmlsec.Key.generate(xmlsec.constants.KeyDataAes, 128,
                                  xmlsec.constants.KeyDataTypeSession)
    ctx.encrypt_xml(template, element)


def b64(xml: str) -> str:
    """The SAMLResponse form value."""
    return base64.b64encode(xml.encode()).decode()


def parse(xml: str) -> etree._Element:
    """Parse for mutation in attack tests."""
    return etree.fromstring(xml.encode())


def tostring(doc: etree._Element) -> str:
    """Serialize a mutated document."""
    return etree.tostring(doc).decode()


def clone(element: etree._Element) -> etree._Element:
    """A deep copy of an element, for wrapping attacks."""
    return copy.deepcopy(element)


def idp_metadata(certs: list[str], entity_id: str = IDP_ENTITY, sso_url: str = IDP_SSO) -> str:
    """IdP metadata (SAML Metadata §2.4.3) with one signing KeyDescriptor per cert."""
    descriptors = "".join(
        '<md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>'
        f"{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>"
        for cert in certs)
    return (
        '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" '
        f'xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity_id}">'
        '<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">'
        f"{descriptors}"
        '<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" '
        f'Location="{sso_url}"/></md:IDPSSODescriptor></md:EntityDescriptor>')
