"""Login traces: every failed login, its reason and a redacted copy of what the IdP sent."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from lxml import etree
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import new_id, utcnow
from app.models.sso import LoginTrace

_NS = {"samlp": "urn:oasis:names:tc:SAML:2.0:protocol",
       "saml": "urn:oasis:names:tc:SAML:2.0:assertion",
       "ds": "http://www.w3.org/2000/09/xmldsig#"}


def mask(value: str) -> str:
    """Keep enough of a value to recognise it, never the whole: a***@acme.com, b***."""
    local, at, domain = value.partition("@")
    if at:
        return f"{local[:1]}***@{domain}"
    return f"{value[:1]}***" if value else ""


def redact_saml(doc: etree._Element | None) -> dict[str, Any]:
    """The Response's structure (issuer, ids, conditions, attribute names), values masked."""
    if doc is None:
        return {"parsed": False}

    def texts(path: str) -> list[str]:
        return [(e.text or "").strip() for e in doc.iterfind(path, _NS)]

    attributes = {
        a.get("Name", ""): [mask((v.text or "").strip())
                            for v in a.iterfind("saml:AttributeValue", _NS)]
        for a in doc.iterfind(".//saml:Attribute", _NS)}
    conditions = [{k: v for k, v in c.attrib.items()}
                  for c in doc.iterfind(".//saml:Conditions", _NS)]
    return {
        "parsed": True, "id": doc.get("ID"), "in_response_to": doc.get("InResponseTo"),
        "destination": doc.get("Destination"), "issue_instant": doc.get("IssueInstant"),
        "issuers": texts(".//saml:Issuer"),
        "status": [s.get("Value") for s in doc.iterfind(".//samlp:StatusCode", _NS)],
        "assertions": [a.get("ID") for a in doc.iterfind(".//saml:Assertion", _NS)],
        "encrypted_assertions": len(doc.findall(".//saml:EncryptedAssertion", _NS)),
        "signatures": [s.getparent().tag.rsplit("}", 1)[-1]
                       for s in doc.iterfind(".//ds:Signature", _NS) if s.getparent() is not None],
        "name_id": [mask(v) for v in texts(".//saml:NameID")],
        "audiences": texts(".//saml:Audience"),
        "conditions": conditions,
        "attributes": attributes,
    }


def redact_claims(claims: dict[str, Any]) -> dict[str, Any]:
    """OIDC claims with every string value masked, keys kept."""
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return mask(value)
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value
    keep = {"iss", "aud", "exp", "iat", "nbf", "alg", "kid"}
    return {k: (v if k in keep else walk(v)) for k, v in claims.items()}


def _storable_text(text: str) -> str:
    """``text`` with NUL and unpaired surrogates as U+FFFD: PostgreSQL's text and jsonb
    hold neither (an error, not a refusal), and psycopg cannot even encode a surrogate."""
    if "\x00" not in text and text.isascii():
        return text
    return "".join("\ufffd" if c == "\x00" or "\ud800" <= c <= "\udfff" else c
                   for c in text)


def storable(value: Any) -> Any:
    """A trace's payload with every string, dict keys included, :func:`_storable_text`.
    An OIDC IdP's ID token is JSON, whose ``\\u0000`` and lone ``\\ud800`` Python reads as
    such: kept in a refusal's trace (its header as sent, ``iss``, ``aud``, the first
    character of each masked claim), one made the refusal a 500 on PostgreSQL."""
    if isinstance(value, str):
        return _storable_text(value)
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {_storable_text(str(k)): storable(v) for k, v in value.items()}
    return value


def record_trace(session: Session, *, organization_id: str | None, connection_id: str | None,
                 protocol: str, reason: str, detail: str, subject: str | None,
                 payload: dict[str, Any], request_id: str | None,
                 trace_id: str | None = None) -> LoginTrace:
    """Store one failed login; its id (``trace_id``, else a new one) is the correlation id
    shown to the user. It is kept ``sso.trace_retention_days`` after ``created_at``
    (:func:`kept_since`)."""
    trace = LoginTrace(id=trace_id or new_id(), organization_id=organization_id,
                       connection_id=connection_id, protocol=protocol, reason=reason,
                       detail=_storable_text(detail[:2000]),
                       subject=_storable_text(mask(subject)) if subject else None,
                       payload=storable(payload), request_id=request_id, created_at=utcnow())
    session.add(trace)
    return trace


def kept_since(retention_days: int, now: datetime | None = None) -> datetime:
    """The oldest ``created_at`` still kept under ``sso.trace_retention_days``: a trace
    created at or before it has expired (shown nowhere, deleted by the SSO purge). The
    setting as it is now decides, for the traces already stored too."""
    return (now or utcnow()) - timedelta(days=retention_days)


def expires_at(trace: LoginTrace, retention_days: int) -> datetime:
    """When ``trace`` expires under the retention as it is now."""
    return trace.created_at + timedelta(days=retention_days)


def list_traces(session: Session, organization_id: str, *, retention_days: int,
                limit: int = 100, reason: str | None = None) -> list[LoginTrace]:
    """An organization's unexpired traces, newest first."""
    query = (select(LoginTrace)
             .where(LoginTrace.organization_id == organization_id,
                    LoginTrace.created_at > kept_since(retention_days))
             .order_by(LoginTrace.created_at.desc()).limit(limit))
    if reason:
        query = query.where(LoginTrace.reason == reason)
    return list(session.scalars(query))


def trace_dict(trace: LoginTrace) -> dict[str, Any]:
    """A trace as JSON for the CLI and the API."""
    return {"correlation_id": trace.id, "organization_id": trace.organization_id,
            "connection_id": trace.connection_id, "protocol": trace.protocol,
            "reason": trace.reason, "detail": trace.detail, "subject": trace.subject,
            "created_at": trace.created_at.isoformat(), "request_id": trace.request_id,
            "payload": trace.payload}
