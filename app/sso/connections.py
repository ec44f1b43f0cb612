"""SSO connections of an organization: create, change, delete, and their email domains.

The IdP metadata of a SAML connection (import, fetch, refresh) is app/sso/connection_metadata.py."""

from __future__ import annotations

import re
from typing import Any

import idna
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.db import utcnow
from app.directory.names import checked_name
from app.directory.uniqueness import flush_unique
from app.errors import Conflict, InvalidInput, NotFound
from app.events.endpoints import endpoint_key
from app.ids import shown_id
from app.models import Organization
from app.models.sso import ConnectionDomain, SsoConnection
from app.sso.connection_sessions import DELETED, end_connection_sessions, lock_connection

POLICIES = ("scim", "jit")
MATCH_BY = ("email", "nameid", "user_name", "external_id")
# In its ASCII form (``ascii_domain``): the top-level label may be an A-label (``xn--p1ai``).
_DOMAIN = re.compile(r"^(?=.{1,253}\Z)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+"
                     r"([a-z]{2,63}|xn--[a-z0-9-]{1,59})\Z")
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
    _check_directory(login_policy, directory_id)
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


def _check_directory(login_policy: str, directory_id: str | None) -> None:
    """A JIT connection creates and updates its users in its directory: without one, every
    login through it was refused as `misconfigured`, though it had been accepted."""
    if login_policy == "jit" and not directory_id:
        raise InvalidInput("a jit connection needs a directory (its users are created there)",
                           field="directory")


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
    if {"login_policy", "directory_id"} & set(changes):  # one stored before stays editable
        _check_directory(changes.get("login_policy", conn.login_policy),
                         changes.get("directory_id", conn.directory_id))
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
        raise NotFound(f"no SSO connection {shown_id(connection_id)}")
    return conn


def list_connections(session: Session, org: Organization) -> list[SsoConnection]:
    """An organization's connections by name."""
    return list(session.scalars(select(SsoConnection).where(
        SsoConnection.organization_id == org.id).order_by(SsoConnection.name)))


def ascii_domain(domain: str) -> str | None:
    """The domain in its ASCII form, lower case, without a final dot: an internationalized
    one (``München.de``) as IDNA 2008 with UTS #46's mapping writes it (``xn--mnchen-3ya.de``,
    RFC 5891 §4), so either spelling is one domain; None when IDNA refuses it."""
    value = domain.strip().rstrip(".")
    if value.isascii():
        return value.lower()
    if len(value) > 253:  # no longer than its ASCII form, which is at most 253
        return None
    try:
        return idna.encode(value, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return None


def normalize_domain(domain: str) -> str:
    """A domain in its ASCII form (``ascii_domain``), its syntax checked."""
    value = ascii_domain(domain)
    if value is None or not _DOMAIN.match(value):
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


def email_domain(email: str) -> str | None:
    """The domain of an email address in its ASCII form (``ascii_domain``), as connection
    domains are stored; None when the address has none."""
    _, at, typed = email.strip().rpartition("@")
    return ascii_domain(typed) if at else None


def connections_for_email(session: Session, email: str) -> list[SsoConnection]:
    """Enabled connections with a verified domain matching the address (home-realm discovery)."""
    domain = email_domain(email)
    if not domain:
        return []
    return list(session.scalars(
        select(SsoConnection).join(ConnectionDomain,
                                   ConnectionDomain.connection_id == SsoConnection.id)
        .where(ConnectionDomain.domain == domain,
               ConnectionDomain.verified_at.is_not(None), SsoConnection.enabled.is_(True))
        .order_by(SsoConnection.name)))


def domain_owners(session: Session, organization_id: str, email: str | None) -> set[str]:
    """The enabled connections of the organization for which an operator verified the
    domain of ``email``: the ones home-realm discovery routes that address to."""
    domain = email_domain(email or "")
    if not domain:
        return set()
    return set(session.scalars(
        select(ConnectionDomain.connection_id)
        .join(SsoConnection, SsoConnection.id == ConnectionDomain.connection_id)
        .where(ConnectionDomain.domain == domain, ConnectionDomain.verified_at.is_not(None),
               SsoConnection.organization_id == organization_id,
               SsoConnection.enabled.is_(True))))
