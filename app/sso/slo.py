"""SAML Single Logout, HTTP-Redirect binding (SAML Profiles §4.4), both directions.

Ending a login here revokes its session and tokens and writes ``session.revoked``, so the
portal hears about it through back-channel logout like any other revocation.
"""

from __future__ import annotations

import base64
import contextlib
import zlib
from dataclasses import dataclass
from typing import Any

from lxml import etree
from onelogin.saml2.auth import OneLogin_Saml2_Auth
from onelogin.saml2.logout_request import OneLogin_Saml2_Logout_Request
from sqlalchemy import update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.events import emit
from app.models.sso import IssuedToken, LoginSession, SsoConnection
from app.sso.keys import SpKeys
from app.sso.outcome import LoginFailed
from app.sso.saml import SpUrls, request_data, saml_settings

_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


@dataclass(frozen=True)
class SamlSubject:
    """What the SP must remember of a login to log it out (SAML Core §3.7.1)."""

    name_id: str
    name_id_format: str | None
    session_index: str | None


def _auth(conn: SsoConnection, urls: SpUrls, keys: SpKeys,
          get: dict[str, str] | None = None) -> OneLogin_Saml2_Auth:
    return OneLogin_Saml2_Auth(request_data(urls.slo, get=get),
                               saml_settings(conn, urls, keys.current, logout=True))


def start_logout(conn: SsoConnection, urls: SpUrls, keys: SpKeys,
                 subject: SamlSubject) -> tuple[str, str]:
    """A signed LogoutRequest to the IdP: (redirect URL, request id)."""
    if not conn.idp_slo_url:
        raise LoginFailed("slo_unsupported", "the IdP publishes no SingleLogoutService")
    auth = _auth(conn, urls, keys)
    url = auth.logout(name_id=subject.name_id, session_index=subject.session_index,
                      name_id_format=subject.name_id_format)
    return url, auth.get_last_request_id()


INFLATED_MAX = 65536  # bytes a LogoutRequest or LogoutResponse may inflate to


def _within_inflate_limit(value: str) -> bool:
    """Whether a DEFLATE-encoded message (SAML Bindings §3.4.4.1) inflates to at most
    ``INFLATED_MAX`` bytes. python3-saml inflates it whole before any check, the signature
    too: a query of 8 KB (gunicorn's request line limit) inflated to some 6 MB, one of 64 KB
    to 50 MB, and parsing that took some 130 MB (a deflate bomb, anyone's to send). Text
    that is not base64 or DEFLATE is left to python3-saml's own refusal."""
    try:
        inflated = zlib.decompressobj(-15).decompress(base64.b64decode(value),
                                                      INFLATED_MAX + 1)
    except (ValueError, zlib.error):
        return True
    return len(inflated) <= INFLATED_MAX


def consume_logout(conn: SsoConnection, urls: SpUrls, keys: SpKeys, get: dict[str, str],
                   request_id: str | None) -> tuple[str | None, str | None]:
    """Validate a LogoutResponse (our request) or LogoutRequest (the IdP's).

    Returns (redirect URL carrying our LogoutResponse or None, NameID the IdP logs out: None
    for a LogoutResponse, and for a LogoutRequest whose NameID cannot be read).
    """
    for name in ("SAMLRequest", "SAMLResponse"):
        if name in get and not _within_inflate_limit(get[name]):
            raise LoginFailed("slo_invalid", f"the {name} inflates past {INFLATED_MAX} bytes")
    auth = _auth(conn, urls, keys, get)
    try:
        url = auth.process_slo(keep_local_session=True, request_id=request_id)
    except Exception as exc:  # python3-saml raises plain errors on bad encodings
        raise LoginFailed("slo_invalid", str(exc)[:300]) from None
    if auth.get_errors():
        raise LoginFailed("slo_invalid", f"{', '.join(auth.get_errors())}: "
                          f"{auth.get_last_error_reason() or ''}"[:300])
    name_id = None
    if "SAMLRequest" in get:
        name_id = _logout_name_id(auth.get_last_request_xml(), keys)
    return url, name_id


def _logout_name_id(xml: str | bytes, keys: SpKeys) -> str | None:
    """The NameID a LogoutRequest logs out (SAML Core §3.7.1), plain or an EncryptedID
    decrypted with one of our keys; None when none can be read (then no browser is ours)."""
    doc = etree.fromstring(xml.encode() if isinstance(xml, str) else xml)
    node = doc.find(f".//{{{_SAML}}}NameID")
    if node is not None:
        return (node.text or "").strip()
    for pair in keys.decryption_pairs():
        with contextlib.suppress(Exception):  # python3-saml raises plain errors: next key
            found = OneLogin_Saml2_Logout_Request.get_nameid(doc, pair.key_pem)
            if isinstance(found, str) and found.strip():
                return found.strip()
    return None


def revoke_login_session(session: Session, login_id: str, actor: Actor,
                         reason: str) -> bool:
    """Revoke one login session and its tokens; audit and tell the portal (outbox).

    The IdP's sealed ID token goes with it (kept for the logout of a live login only): every
    logout path, RP-initiated, SP- or IdP-initiated SLO, ends here."""
    login = session.get(LoginSession, login_id)
    if login is None:
        return False
    login.upstream_id_token = None
    if login.revoked_at is not None:
        return False
    now = utcnow()
    login.revoked_at, login.revoked_reason = now, reason
    tokens = session.execute(update(IssuedToken).where(
        IssuedToken.session_id == login.id, IssuedToken.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)).rowcount
    record(session, organization_id=login.organization_id, action="session:revoke",
           actor=actor, subject_type="user", subject_id=login.user_id,
           data={"session_ids": [login.id], "tokens_revoked": tokens or 0, "reason": reason})
    emit(session, organization_id=login.organization_id, type="session.revoked",
         aggregate_id=login.user_id, payload={"session_id": login.id,
                                              "user_id": login.user_id, "reason": reason})
    return True


def subject_payload(subject: SamlSubject) -> dict[str, Any]:
    """The subject as the browser session keeps it."""
    return {"name_id": subject.name_id, "format": subject.name_id_format,
            "session_index": subject.session_index}
