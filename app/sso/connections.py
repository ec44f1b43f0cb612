"""SSO connections of an organization: create, IdP metadata import and refresh, domains."""

from __future__ import annotations

import re
import ssl
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from onelogin.saml2.idp_metadata_parser import OneLogin_Saml2_IdPMetadataParser
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import Database, utcnow
from app.directory.names import checked_name
from app.directory.uniqueness import flush_unique
from app.errors import Conflict, DomainError, InvalidInput, NotFound
from app.events.endpoints import MASK, endpoint_key, scrub
from app.models import Organization
from app.models.sso import ConnectionDomain, SsoConnection
from app.sso.connection_sessions import DELETED, end_connection_sessions, lock_connection

POLICIES = ("scim", "jit")
MATCH_BY = ("email", "nameid", "user_name", "external_id")
_DOMAIN = re.compile(r"^(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}\Z")
_METADATA_MAX_BYTES = 1_000_000
# Unique indexes as PostgreSQL and SQLite name them in a violation (a concurrent create).
_NAME_INDEX = ("uq_sso_connections_organization_id_name",
               "sso_connections.organization_id, sso_connections.name")
_DOMAIN_INDEX = ("uq_sso_connection_domains_connection_id_domain",
                 "sso_connection_domains.connection_id, sso_connection_domains.domain")
# Attribute names tried when a connection does not name its own (Entra, Okta, eduPerson).
DEFAULT_ATTRIBUTES: dict[str, list[str]] = {
    "email": ["email", "mail", "emailAddress", "urn:oid:0.9.2342.19200300.100.1.3",
              "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress"],
    "given_name": ["givenName", "firstName", "urn:oid:2.5.4.42",
                   "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname"],
    "family_name": ["sn", "surname", "lastName", "urn:oid:2.5.4.4",
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname"],
    "user_name": ["userName", "uid", "urn:oid:0.9.2342.19200300.100.1.1"],
    "external_id": ["externalId", "objectGUID",
                    "http://schemas.microsoft.com/identity/claims/objectidentifier"],
    "groups": ["groups", "memberOf", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"],
    "department": ["department"],
}


def create_connection(session: Session, org: Organization, name: str, protocol: str,
                      actor: Actor, *, login_policy: str = "scim", match_by: str = "email",
                      directory_id: str | None = None, allow_idp_initiated: bool = False,
                      sign_requests: bool = False,
                      sp_key_configured: bool = False) -> SsoConnection:
    """Add a SAML or OIDC connection to an organization; ``sp_key_configured``: whether the
    deployment has an SP key to sign AuthnRequests with (``sso.sp_key_file``)."""
    if protocol not in ("saml", "oidc"):
        raise InvalidInput("protocol must be saml or oidc", field="protocol")
    _check_choices(login_policy, match_by)
    _check_signing(sign_requests, sp_key_configured)
    checked_name(name, "connection name")
    taken = session.scalar(select(SsoConnection.id).where(
        SsoConnection.organization_id == org.id, SsoConnection.name == name))
    exists = f"connection {name} already exists in {org.slug}"
    if taken:
        raise Conflict(exists, field="name")
    conn = SsoConnection(organization_id=org.id, name=name, protocol=protocol,
                         login_policy=login_policy, match_by=match_by,
                         directory_id=directory_id, allow_idp_initiated=allow_idp_initiated,
                         sign_requests=sign_requests, idp_certs=[], attribute_map={},
                         oidc_algorithms=[])
    session.add(conn)
    flush_unique(session, _NAME_INDEX, exists, "name")  # a concurrent create of the name
    record(session, organization_id=org.id, action="sso:connection:create", actor=actor,
           subject_type="sso_connection", subject_id=conn.id,
           data={"name": name, "protocol": protocol, "login_policy": login_policy,
                 "match_by": match_by})
    return conn


# Settings an operator may change after creation, by ``update_connection``.
EDITABLE = ("name", "login_policy", "match_by", "directory_id", "allow_idp_initiated",
            "sign_requests", "enabled")


def _check_signing(sign_requests: bool, sp_key_configured: bool) -> None:
    """Signed AuthnRequests need the SP key: without one they went out unsigned, silently,
    and an IdP that requires signed requests refused every login with no hint why."""
    if sign_requests and not sp_key_configured:
        raise InvalidInput("sign_requests needs the deployment's SP key pair, and none is "
                           "configured (sso.sp_key_file and sso.sp_cert_file)",
                           field="sign_requests")


def _check_choices(login_policy: str, match_by: str) -> None:
    if login_policy not in POLICIES:
        raise InvalidInput(f"login policy must be one of {', '.join(POLICIES)}",
                           field="login_policy")
    if match_by not in MATCH_BY:
        raise InvalidInput(f"match_by must be one of {', '.join(MATCH_BY)}", field="match_by")


def update_connection(session: Session, conn: SsoConnection, actor: Actor,
                      changes: dict[str, Any], *,
                      sp_key_configured: bool = False) -> SsoConnection:
    """Change a connection's settings (see EDITABLE); audit ``sso:connection:update``.
    Asking for ``sign_requests`` needs ``sp_key_configured``, as on create. Disabling ends
    the connection's live logins and their tokens (app/sso/connection_sessions.py)."""
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise InvalidInput(f"cannot change {', '.join(unknown)}", field=unknown[0])
    lock_connection(session, conn.id)  # before any change: logins in flight commit first
    _check_choices(changes.get("login_policy", conn.login_policy),
                   changes.get("match_by", conn.match_by))
    _check_signing(bool(changes.get("sign_requests")), sp_key_configured)
    name = changes.get("name", conn.name)
    if name != conn.name:
        checked_name(name, "connection name")
        if session.scalar(select(SsoConnection.id).where(
                SsoConnection.organization_id == conn.organization_id,
                SsoConnection.name == name)):
            raise Conflict(f"connection {name} already exists", field="name")
    changed = {k: v for k, v in changes.items() if getattr(conn, k) != v}
    for key, value in changed.items():
        setattr(conn, key, value)
    if changed:
        conn.updated_at = utcnow()
        # Disabling ends the logins made through the connection too, with their tokens.
        ended = (end_connection_sessions(session, conn, actor)
                 if changed.get("enabled") is False else 0)
        record(session, organization_id=conn.organization_id, action="sso:connection:update",
               actor=actor, subject_type="sso_connection", subject_id=conn.id,
               data={"changed": changed, **({"sessions_ended": ended} if ended else {})})
    return conn


def delete_connection(session: Session, conn: SsoConnection, actor: Actor) -> None:
    """Delete a connection, its domains and pending requests; audit ``sso:connection:delete``.

    The logins made through it end as on a disable (app/sso/connection_sessions.py), with
    reason ``connection_deleted``: a connection removed because its IdP is distrusted must
    not leave the sessions and portal tokens that IdP vouched for live until they expire.
    """
    ended = end_connection_sessions(session, conn, actor, reason=DELETED)
    record(session, organization_id=conn.organization_id, action="sso:connection:delete",
           actor=actor, subject_type="sso_connection", subject_id=conn.id,
           data={"name": conn.name, "protocol": conn.protocol,
                 "idp": conn.idp_entity_id or (endpoint_key(conn.oidc_discovery_url)
                                               if conn.oidc_discovery_url else None),
                 **({"sessions_ended": ended} if ended else {})})
    session.delete(conn)
    session.flush()


def get_connection(session: Session, connection_id: str) -> SsoConnection:
    """The connection with this id (NotFound otherwise)."""
    conn = session.get(SsoConnection, connection_id)
    if conn is None:
        raise NotFound(f"no SSO connection {connection_id}")
    return conn


def list_connections(session: Session, org: Organization) -> list[SsoConnection]:
    """An organization's connections by name."""
    return list(session.scalars(select(SsoConnection).where(
        SsoConnection.organization_id == org.id).order_by(SsoConnection.name)))


def _certs_from(idp: dict[str, Any]) -> list[str]:
    multi = idp.get("x509certMulti") or {}
    certs = list(multi.get("signing") or [])
    if not certs and idp.get("x509cert"):
        certs = [idp["x509cert"]]
    return [re.sub(r"\s+", "", c) for c in certs]


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


def fetch_metadata(url: str, *, timeout: float = 10.0,
                   context: ssl.SSLContext | None = None) -> str:
    """Download IdP metadata over https only (certificate verified), bounded in size."""
    if not url.lower().startswith("https://"):
        raise InvalidInput("metadata URL must be https")
    if MASK in url:
        raise InvalidInput("metadata URL holds a masked credential (***), as Roster shows "
                           "it: give the URL in full")
    request = urllib.request.Request(  # noqa: S310  https only, checked above
        url, headers={"Accept": "application/samlmetadata+xml"})
    try:
        with urllib.request.urlopen(  # noqa: S310  scheme checked above
            request, timeout=timeout, context=context or ssl.create_default_context()
        ) as response:
            body = response.read(_METADATA_MAX_BYTES + 1)
    except OSError as exc:
        # Credentials in the URL masked: the error reaches the worker's output and the log.
        raise InvalidInput(f"cannot fetch metadata from {endpoint_key(url)}: "
                           f"{scrub(str(exc), url)}") from None
    if len(body) > _METADATA_MAX_BYTES:
        raise InvalidInput("metadata document is too large")
    return body.decode("utf-8", "replace")


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


def refresh_metadata(db: Database, connection_id: str, actor: Actor, *,
                     context: ssl.SSLContext | None = None) -> SsoConnection:
    """Re-read the IdP metadata from the connection's https URL (certificate rollover).

    Read, fetch, write: the download (up to its timeout) happens between two short
    transactions, so no write lock is held while the IdP's server answers.
    """
    with db.transaction(readonly=True) as session:
        url = metadata_url_of(get_connection(session, connection_id))
    xml = fetch_metadata(url, context=context)
    with db.transaction() as session:
        return apply_fetched_metadata(session, get_connection(session, connection_id), url,
                                      xml, actor)


# How long a worker's claim on a due refresh lasts: far longer than the fetch (10 s at
# most) and the write. A claim left by a worker that died, or by a fetch that failed, runs
# out, and then one worker tries again, not every worker at once.
REFRESH_CLAIM = timedelta(minutes=15)


def refresh_due(db: Database, older_than: timedelta, actor: Actor, *,
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
            xml = fetch_metadata(url)
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


def refresh_each(db: Database, connection_ids: list[str],
                 actor: Actor) -> Iterator[tuple[str, SsoConnection | DomainError]]:
    """Refresh each connection in turn; a failing one is reported and the others go on."""
    for connection_id in connection_ids:
        try:
            yield connection_id, refresh_metadata(db, connection_id, actor)
        except DomainError as exc:
            yield connection_id, exc


def normalize_domain(domain: str) -> str:
    """Lower-case a domain and check its syntax."""
    value = domain.strip().lower().rstrip(".")
    if not _DOMAIN.match(value):
        raise InvalidInput(f"{domain!r} is not a domain name", field="domain")
    return value


def add_domain(session: Session, conn: SsoConnection, domain: str,
               actor: Actor) -> ConnectionDomain:
    """Attach an email domain (unverified until an operator verifies it)."""
    value = normalize_domain(domain)
    taken = f"{value} is already a domain of this connection"
    if session.scalar(select(ConnectionDomain.id).where(
            ConnectionDomain.connection_id == conn.id, ConnectionDomain.domain == value)):
        raise Conflict(taken, field="domain")
    row = ConnectionDomain(connection_id=conn.id, domain=value)
    session.add(row)
    flush_unique(session, _DOMAIN_INDEX, taken, "domain")  # a concurrent add of the domain
    record(session, organization_id=conn.organization_id, action="sso:domain:add",
           actor=actor, subject_type="sso_connection", subject_id=conn.id,
           data={"domain": value})
    return row


def verify_domain(session: Session, conn: SsoConnection, domain: str,
                  actor: Actor) -> ConnectionDomain:
    """Mark a domain verified: from now on discovery routes its addresses to ``conn``."""
    value = normalize_domain(domain)
    row = session.scalar(select(ConnectionDomain).where(
        ConnectionDomain.connection_id == conn.id, ConnectionDomain.domain == value))
    if row is None:
        raise NotFound(f"{value} is not a domain of this connection")
    if row.verified_at is None:
        row.verified_at = utcnow()
        record(session, organization_id=conn.organization_id, action="sso:domain:verify",
               actor=actor, subject_type="sso_connection", subject_id=conn.id,
               data={"domain": value})
    return row


def connections_for_email(session: Session, email: str) -> list[SsoConnection]:
    """Enabled connections with a verified domain matching the address (home-realm discovery)."""
    _, at, domain = email.strip().rpartition("@")
    if not at or not domain:
        return []
    return list(session.scalars(
        select(SsoConnection).join(ConnectionDomain,
                                   ConnectionDomain.connection_id == SsoConnection.id)
        .where(ConnectionDomain.domain == domain.lower().rstrip("."),
               ConnectionDomain.verified_at.is_not(None), SsoConnection.enabled.is_(True))
        .order_by(SsoConnection.name)))
