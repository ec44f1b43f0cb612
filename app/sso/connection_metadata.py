"""The IdP metadata of a SAML connection (SAML Metadata §2.4.3): import from XML, fetch
over https, refresh from the connection's URL (by an operator, or due in `roster worker`)."""

from __future__ import annotations

import base64
import http.client
import re
import ssl
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from cryptography import x509
from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import Database, utcnow
from app.errors import Conflict, DomainError, InvalidInput
from app.events.endpoints import MASK, endpoint_key
from app.http_deadline import cuttable_opener, within
from app.models.sso import SsoConnection
from app.public_address import AddressNotPublic, public_only
from app.sso.connections import get_connection
from app.sso.idp_fetch import failure, not_public
from app.sso.subject_links import forget_subjects

_METADATA_MAX_BYTES = 1_000_000


# An XML declaration, and the encoding it names (XML 1.0 §2.8, §4.3.3).
_DECLARATION = re.compile(
    rb"""\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["'][^>]*\?>""")


def metadata_text(data: bytes) -> str:
    """A metadata document's bytes as text, in the encoding its byte order mark or XML
    declaration names (XML 1.0 §4.3.3, Appendix F; UTF-8 without either), the declaration
    dropped: the parser reads text as UTF-8, so an ISO-8859-1 file was refused (read as
    UTF-8) or, from a URL, its non-ASCII names mangled."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe", "utf-16"),
                       (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return _without_declaration(data.decode(codec, "replace"))
    declared = _DECLARATION.match(data)
    codec = declared.group(1).decode("ascii") if declared else "utf-8"
    try:
        return _without_declaration(data.decode(codec, "replace"))
    except LookupError:
        raise InvalidInput(f"IdP metadata declares an unknown encoding {codec!r}") from None


def _without_declaration(text: str) -> str:
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", text, count=1)


# PEM armour some exports put inside <ds:X509Certificate>, which holds base64 only.
_ARMOUR = re.compile(r"-----(BEGIN|END)\s*CERTIFICATE-----")


def _certs_from(idp: dict[str, Any]) -> list[str]:
    """The signing certificates as base64 DER (XMLDSig §4.5.4's ds:X509Certificate), PEM
    armour and whitespace dropped. One that is no X.509 certificate is refused: stored, it
    was counted as a certificate and every login was refused as `untrusted_certificate`."""
    multi = idp.get("x509certMulti") or {}
    certs = list(multi.get("signing") or [])
    if not certs and idp.get("x509cert"):
        certs = [idp["x509cert"]]
    found = [re.sub(r"\s+", "", _ARMOUR.sub("", c)) for c in certs]
    for number, cert in enumerate(found, 1):
        try:
            x509.load_der_x509_certificate(base64.b64decode(cert, validate=True))
        except ValueError:
            raise InvalidInput(f"IdP metadata's signing certificate {number} is not a "
                               "base64 X.509 certificate") from None
    return found


def apply_idp_metadata(session: Session, conn: SsoConnection, xml: str, actor: Actor, *,
                       entity_id: str | None = None) -> SsoConnection:
    """Import the IdP's entity id, SSO/SLO URLs and every signing cert (SAML Metadata §2.4.3)."""
    if conn.protocol != "saml":
        raise InvalidInput("metadata import is for SAML connections")
    try:
        parsed = OneLogin_Saml2_IdPMetadataParser.parse(xml, entity_id=entity_id)
    except Exception as exc:  # the parser raises bare Exceptions on bad XML
        raise InvalidInput(f"IdP metadata is not usable: {str(exc)[:200]}") from None
    idp = parsed.get("idp") or {}
    certs = _certs_from(idp)
    sso_url = (idp.get("singleSignOnService") or {}).get("url")
    if not idp.get("entityId") or not sso_url or not certs:
        raise InvalidInput("IdP metadata needs an entityID, an SSO URL (HTTP-Redirect) and a "
                           "signing certificate")
    if conn.idp_entity_id and conn.idp_entity_id != idp["entityId"]:
        # Another IdP: its persistent NameIDs are not the old one's (SAML Core §8.3.7).
        forget_subjects(session, conn, actor, "idp_changed")
    conn.idp_entity_id = idp["entityId"]
    conn.idp_sso_url = sso_url
    conn.idp_slo_url = (idp.get("singleLogoutService") or {}).get("url")
    conn.idp_certs = certs
    conn.metadata_refreshed_at = conn.updated_at = utcnow()
    record(session, organization_id=conn.organization_id, action="sso:connection:metadata",
           actor=actor, subject_type="sso_connection", subject_id=conn.id,
           data={"entity_id": conn.idp_entity_id, "certs": len(certs),
                 # A token in the URL (?token=, a secret path) stays out of the record,
                 # which is exported and can never be edited (app/events/endpoints.py).
                 "source": endpoint_key(conn.metadata_url) if conn.metadata_url else "xml"})
    return conn


def fetch_metadata(url: str, *, private_ok: bool, timeout: float = 10.0,
                   context: ssl.SSLContext | None = None) -> str:
    """Download IdP metadata over https only (certificate verified), bounded in size and
    in time: the whole download ends within ``timeout`` seconds (app/http_deadline.py),
    not each read of it (a server sending a byte every few seconds held an API request, or
    `roster connection metadata`, for as long as it liked).

    ``private_ok`` false (``sso.idp_private_addresses``): a host, or a redirect's, that is
    not on the public internet is refused, and a failed connection told without the OS's
    words (app/sso/idp_fetch.py)."""
    if not url.lower().startswith("https://"):
        raise InvalidInput("metadata URL must be https")
    if MASK in url:
        raise InvalidInput("metadata URL holds a masked credential (***), as Roster shows "
                           "it: give the URL in full")
    request = urllib.request.Request(  # noqa: S310  https only, checked above
        url, headers={"Accept": "application/samlmetadata+xml"})
    opener = cuttable_opener(context=context or ssl.create_default_context())
    with within(timeout) as cut, public_only(not private_ok):
        try:
            with opener.open(request, timeout=timeout) as response:
                body = response.read(_METADATA_MAX_BYTES + 1)
        except AddressNotPublic as exc:
            raise InvalidInput(f"cannot fetch metadata from {endpoint_key(url)}: "
                               f"{not_public(url, exc)}") from None
        except (OSError, http.client.HTTPException) as exc:
            # Credentials in the URL masked: the error reaches the worker's output and the log.
            why = f"no complete answer within {timeout:g} s" if cut.is_set() \
                else failure(url, exc, private_ok=private_ok)
            raise InvalidInput(f"cannot fetch metadata from {endpoint_key(url)}: "
                               f"{why}") from None
    if cut.is_set():  # cut as the last bytes came: what was read may be short
        raise InvalidInput(f"cannot fetch metadata from {endpoint_key(url)}: "
                           f"no complete answer within {timeout:g} s")
    if len(body) > _METADATA_MAX_BYTES:
        raise InvalidInput("metadata document is too large")
    return metadata_text(body)


def metadata_url_of(conn: SsoConnection) -> str:
    """The https URL the connection's IdP metadata is refreshed from."""
    if conn.protocol != "saml" or not conn.metadata_url:
        raise InvalidInput("connection has no metadata URL")
    return conn.metadata_url


def apply_fetched_metadata(session: Session, conn: SsoConnection, url: str, xml: str,
                           actor: Actor) -> SsoConnection:
    """Apply metadata fetched from ``url`` before this transaction began.

    The fetch ran outside any transaction; if an operator pointed the connection at another
    URL meanwhile, the document is stale and refused rather than applied.
    """
    if conn.metadata_url != url:
        raise Conflict("the connection's metadata URL changed during the refresh; try again",
                       field="metadata_url")
    return apply_idp_metadata(session, conn, xml, actor, entity_id=conn.idp_entity_id)


def refresh_metadata(db: Database, connection_id: str, actor: Actor, *, private_ok: bool,
                     context: ssl.SSLContext | None = None) -> SsoConnection:
    """Re-read the IdP metadata from the connection's https URL (certificate rollover).

    Read, fetch, write: the download (up to its timeout) happens between two short
    transactions, so no write lock is held while the IdP's server answers.
    """
    with db.transaction(readonly=True) as session:
        url = metadata_url_of(get_connection(session, connection_id))
    xml = fetch_metadata(url, private_ok=private_ok, context=context)
    with db.transaction() as session:
        return apply_fetched_metadata(session, get_connection(session, connection_id), url,
                                      xml, actor)


# How long a worker's claim on a due refresh lasts: far longer than the fetch (10 s at
# most) and the write. A claim left by a worker that died, or by a fetch that failed, runs
# out, and then one worker tries again, not every worker at once.
REFRESH_CLAIM = timedelta(minutes=15)


def refresh_due(db: Database, older_than: timedelta, actor: Actor, *, private_ok: bool,
                claim: timedelta = REFRESH_CLAIM,
                ) -> Iterator[tuple[str, SsoConnection | DomainError]]:
    """Refresh the URL-backed SAML metadata older than ``older_than`` (`roster worker`),
    each connection once per due time however many workers look at once.

    Each due connection is claimed first, by a conditional UPDATE in a transaction of its
    own (still due, and no live claim): one worker wins, the others skip it (before, every
    worker that found it due fetched it and wrote it, each an audit event). The fetch runs
    with no transaction open, as in ``refresh_metadata``; the write ends the claim. A fetch
    that fails keeps it until it runs out (``claim``), so a failing URL is tried again by
    one worker then."""
    with db.transaction(readonly=True) as session:
        due = url_backed_connections(session, older_than=older_than)
    for connection_id in due:
        url = _claim_refresh(db, connection_id, older_than, claim)
        if url is None:
            continue  # refreshed meanwhile, or another worker is at it
        try:
            xml = fetch_metadata(url, private_ok=private_ok)
            with db.transaction() as session:
                conn = apply_fetched_metadata(
                    session, get_connection(session, connection_id), url, xml, actor)
                conn.metadata_claimed_until = None
        except DomainError as exc:
            yield connection_id, exc
            continue
        yield connection_id, conn


def _claim_refresh(db: Database, connection_id: str, older_than: timedelta,
                   claim: timedelta) -> str | None:
    """Claim a connection's due refresh: its metadata URL, or None when it is not due any
    more or another worker holds a live claim (one UPDATE: the row's lock decides)."""
    now = utcnow()
    with db.transaction() as session:
        return session.scalar(
            update(SsoConnection)
            .where(SsoConnection.id == connection_id, SsoConnection.protocol == "saml",
                   SsoConnection.metadata_url.is_not(None),
                   or_(SsoConnection.metadata_refreshed_at.is_(None),
                       SsoConnection.metadata_refreshed_at < now - older_than),
                   or_(SsoConnection.metadata_claimed_until.is_(None),
                       SsoConnection.metadata_claimed_until < now))
            .values(metadata_claimed_until=now + claim)
            .returning(SsoConnection.metadata_url)
            .execution_options(synchronize_session=False))


def url_backed_connections(session: Session, *,
                           older_than: timedelta | None = None) -> list[str]:
    """SAML connections whose metadata comes from a URL: all, or those whose metadata is
    older than ``older_than`` (or was never read)."""
    query = select(SsoConnection.id).where(SsoConnection.protocol == "saml",
                                           SsoConnection.metadata_url.is_not(None))
    if older_than is not None:
        query = query.where(or_(SsoConnection.metadata_refreshed_at.is_(None),
                                SsoConnection.metadata_refreshed_at < utcnow() - older_than))
    return list(session.scalars(query.order_by(SsoConnection.id)))


def refresh_each(db: Database, connection_ids: list[str], actor: Actor, *,
                 private_ok: bool) -> Iterator[tuple[str, SsoConnection | DomainError]]:
    """Refresh each connection in turn; a failing one is reported and the others go on."""
    for connection_id in connection_ids:
        try:
            yield connection_id, refresh_metadata(db, connection_id, actor,
                                                  private_ok=private_ok)
        except DomainError as exc:
            yield connection_id, exc
