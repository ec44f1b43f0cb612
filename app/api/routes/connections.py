"""SSO connections of an organization through the API (issue 8): SAML from IdP metadata
(XML or an https URL), OIDC from a discovery URL and client; update, disable, delete;
email domains. The same domain functions as `roster connection` do the work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, json
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page
from app.api.routes.connection_schemas import (
    ConnectionCreateSchema,
    ConnectionSchema,
    ConnectionUpdateSchema,
    DomainCreateSchema,
    DomainSchema,
)
from app.api.schemas import PageArgs
from app.api.views import bp
from app.audit import Actor
from app.db import Database
from app.directory.directories import get_directory
from app.errors import InvalidInput, NotFound
from app.models import Organization
from app.models.sso import ConnectionDomain, SsoConnection
from app.sso.connection_metadata import (
    apply_fetched_metadata,
    apply_idp_metadata,
    fetch_metadata,
    metadata_url_of,
)
from app.sso.connections import (
    add_domain,
    create_connection,
    delete_connection,
    update_connection,
    verify_domain,
)
from app.sso.idp_fetch import check_public
from app.sso.oidc_config import check_url, configure_oidc
from app.sso.oidc_rp import ProviderCache
from app.sso.outcome import LoginFailed
from app.sso.subject_links import unlink_user

_OIDC_FIELDS = ("discovery_url", "client_id", "client_secret", "scopes", "groups_claim",
                "algorithms")
_SAML_FIELDS = ("metadata_xml", "metadata_url", "entity_id")


def _in_org(conn: SsoConnection | None, org_id: str) -> SsoConnection:
    if conn is None or conn.organization_id != org_id:
        raise NotFound("no such connection in this organization")
    return conn


def _connection(ctx: ApiContext, connection_id: str) -> SsoConnection:
    assert ctx.org is not None
    found = ctx.session.get(SsoConnection, connection_id) if len(connection_id) <= 36 else None
    return _in_org(found, ctx.org.id)


def _protocol_fields(protocol: str, body: dict[str, Any]) -> None:
    """SAML fields on an OIDC connection (or the reverse) are a mistake, not ignored; so is
    an ``entity_id`` without the metadata it picks an IdP from (it was dropped)."""
    foreign = (*_OIDC_FIELDS, "check_discovery") if protocol == "saml" else _SAML_FIELDS
    wrong = [f for f in foreign if f in body]
    if wrong:
        raise InvalidInput(f"{wrong[0]} does not apply to a {protocol} connection",
                           field=wrong[0])
    if "entity_id" in body and not ("metadata_xml" in body or "metadata_url" in body):
        raise InvalidInput("entity_id picks the IdP in a metadata aggregate: give it with "
                           "metadata_xml or metadata_url", field="entity_id")


@contextmanager
def _naming(field: str) -> Iterator[None]:
    """An InvalidInput the SSO service raised without a field names ``field``: the body's
    metadata was unusable or unreachable, and the problem's ``errors`` say which field."""
    try:
        yield
    except InvalidInput as exc:
        if exc.field is not None:
            raise
        raise InvalidInput(exc.detail, field=field) from None


@dataclass(frozen=True)
class _Fetched:
    """What the body's URLs said, read before any write transaction opens."""

    metadata_xml: str | None = None


def _fetch(protocol: str, body: dict[str, Any]) -> _Fetched:
    """Check the body's fields and do its outbound reads (IdP metadata, OIDC discovery).

    Runs outside any write transaction: an IdP may take the whole timeout to answer, and
    SQLite's single write lock must not wait for it.
    """
    _protocol_fields(protocol, body)
    if "metadata_xml" in body and "metadata_url" in body:
        raise InvalidInput("give metadata_xml or metadata_url, not both", field="metadata_url")
    xml = body.get("metadata_xml")
    if "metadata_url" in body:
        if not body["metadata_url"].lower().startswith("https://"):
            raise InvalidInput("metadata_url must be https", field="metadata_url")
        with _naming("metadata_url"):
            xml = fetch_metadata(body["metadata_url"], private_ok=_private_ok())
    if protocol == "oidc" and "discovery_url" in body:
        check_public(check_url(body["discovery_url"], "discovery_url"), "discovery_url",
                     private_ok=_private_ok())
    if protocol == "oidc" and body.get("check_discovery", True) and "discovery_url" in body:
        url = check_url(body["discovery_url"], "discovery_url")
        try:
            ProviderCache(private_ok=_private_ok()).provider(url)
        except LoginFailed as exc:
            raise InvalidInput(f"IdP not usable ({exc.reason}): {exc.detail}",
                               field="discovery_url") from None
    return _Fetched(metadata_xml=xml)


def _apply(session: Session, actor: Actor, conn: SsoConnection, body: dict[str, Any],
           fetched: _Fetched) -> None:
    """Import SAML metadata or set the OIDC client, as the body asks (already fetched)."""
    if "metadata_url" in body:
        conn.metadata_url = body["metadata_url"]
    if fetched.metadata_xml is not None:
        with _naming("metadata_url" if "metadata_url" in body else "metadata_xml"):
            apply_idp_metadata(session, conn, fetched.metadata_xml, actor,
                               entity_id=body.get("entity_id"))
    if conn.protocol == "oidc" and any(f in body for f in _OIDC_FIELDS):
        configure_oidc(session, conn, actor,
                       secret_key=current_app.config["ROSTER"]["app"]["secret_key"],
                       discovery_url=body.get("discovery_url"),
                       client_id=body.get("client_id"), client_secret=body.get("client_secret"),
                       scopes=body.get("scopes"), groups_claim=body.get("groups_claim"),
                       algorithms=body.get("algorithms"))


def _private_ok() -> bool:
    """``sso.idp_private_addresses``: whether IdPs on addresses that are not public may be
    fetched from (app/public_address.py)."""
    return bool(current_app.config["ROSTER"]["sso"]["idp_private_addresses"])


def _write() -> Database:
    """The database, for a view declared ``own_writes`` to open its write transaction."""
    return current_app.extensions["roster.db"]


def _sp_key_configured() -> bool:
    """Whether this deployment can sign AuthnRequests (sign_requests needs it)."""
    return bool(current_app.config["ROSTER"]["sso"]["sp_key_file"])


def _dumped(conn: SsoConnection, status: int = 200) -> Response:
    """The connection as JSON, dumped inside the transaction that wrote it."""
    return Response(json.dumps(ConnectionSchema().dump(conn)), status=status,
                    mimetype="application/json")


def _directory_id(session: Session, org: Organization, ref: str | None) -> str | None:
    return get_directory(session, ref, org).id if ref else None


@api_route(bp, "/orgs/<org_id>/connections", methods=["GET"], permission="connections:read",
           tags=["sso"], summary="List SSO connections", query=PageArgs,
           response=ConnectionSchema, paginated=True)
def list_connections(ctx: ApiContext) -> Page:
    """The organization's SAML and OIDC connections, oldest first."""
    assert ctx.org is not None
    stmt = select(SsoConnection).where(SsoConnection.organization_id == ctx.org.id)
    return ctx.paginate(stmt, (SsoConnection.created_at, SsoConnection.id))


@api_route(bp, "/orgs/<org_id>/connections", methods=["POST"],
           permission="connections:write", tags=["sso"],
           summary="Create a SAML or OIDC connection", body=ConnectionCreateSchema,
           response=ConnectionSchema, status=201, own_writes=True)
def create_connection_(ctx: ApiContext) -> Response:
    """Create a connection; the response names the URLs to register at the IdP."""
    assert ctx.org is not None
    body = ctx.body
    _directory_id(ctx.session, ctx.org, body.get("directory"))  # a bad reference: no fetch
    fetched = _fetch(body["protocol"], body)
    with _write().transaction() as s:
        org = s.get(Organization, ctx.org.id)
        if org is None:
            raise NotFound("the organization was deleted meanwhile")
        conn = create_connection(
            s, org, body["name"], body["protocol"], ctx.actor,
            login_policy=body.get("login_policy", "scim"),
            match_by=body.get("match_by", "email"),
            directory_id=_directory_id(s, org, body.get("directory")),
            allow_idp_initiated=body.get("allow_idp_initiated", False),
            sign_requests=body.get("sign_requests", False),
            sp_key_configured=_sp_key_configured())
        _apply(s, ctx.actor, conn, body, fetched)
        return _dumped(conn, 201)


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>", methods=["GET"],
           permission="connections:read", tags=["sso"], summary="Get an SSO connection",
           response=ConnectionSchema)
def get_connection_(ctx: ApiContext, connection_id: str) -> SsoConnection:
    """One connection with its domains and the URLs to register at the IdP."""
    return _connection(ctx, connection_id)


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>", methods=["PATCH"],
           permission="connections:write", tags=["sso"],
           summary="Change an SSO connection (settings, metadata, OIDC client)",
           body=ConnectionUpdateSchema, response=ConnectionSchema, own_writes=True)
def update_connection_(ctx: ApiContext, connection_id: str) -> Response:
    """Change the given fields; new metadata or OIDC settings are checked like on create."""
    assert ctx.org is not None
    body = ctx.body
    if "directory" in body:
        _directory_id(ctx.session, ctx.org, body["directory"])  # a bad reference: no fetch
    fetched = _fetch(_connection(ctx, connection_id).protocol, body)
    changes = {k: body[k] for k in ("name", "login_policy", "match_by", "allow_idp_initiated",
                                    "sign_requests", "enabled") if k in body}
    with _write().transaction() as s:
        conn = _in_org(s.get(SsoConnection, connection_id), ctx.org.id)
        if "directory" in body:
            org = s.get(Organization, ctx.org.id)
            assert org is not None
            changes["directory_id"] = _directory_id(s, org, body["directory"])
        update_connection(s, conn, ctx.actor, changes, sp_key_configured=_sp_key_configured())
        _apply(s, ctx.actor, conn, body, fetched)
        return _dumped(conn)


def _set_enabled(ctx: ApiContext, connection_id: str, enabled: bool) -> SsoConnection:
    conn = _connection(ctx, connection_id)
    return update_connection(ctx.session, conn, ctx.actor, {"enabled": enabled})


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>/disable", methods=["POST"],
           permission="connections:write", tags=["sso"],
           summary="Disable an SSO connection (no new logins; its logins end)",
           response=ConnectionSchema)
def disable_connection(ctx: ApiContext, connection_id: str) -> SsoConnection:
    """Refuse logins and discovery through this connection and end the logins it made,
    with the portal's tokens issued on them; settings are kept."""
    return _set_enabled(ctx, connection_id, False)


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>/enable", methods=["POST"],
           permission="connections:write", tags=["sso"], summary="Enable an SSO connection",
           response=ConnectionSchema)
def enable_connection(ctx: ApiContext, connection_id: str) -> SsoConnection:
    """Accept logins through this connection again."""
    return _set_enabled(ctx, connection_id, True)


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>", methods=["DELETE"],
           permission="connections:write", tags=["sso"],
           summary="Delete an SSO connection, its domains and its traces (its logins end)",
           status=204,
           produces={"text/plain": "No content."})
def delete_connection_(ctx: ApiContext, connection_id: str) -> Response:
    """Delete the connection (audited); the logins made through it end, with the portal's
    tokens issued on them, as on a disable."""
    delete_connection(ctx.session, _connection(ctx, connection_id), ctx.actor)
    return Response(status=204)


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>/subject-links/<user_id>",
           methods=["DELETE"], permission="connections:write", tags=["sso"],
           summary="Untie a user from the IdP subject it signed in with (its next login "
                   "ties a new one)", status=204, produces={"text/plain": "No content."})
def unlink_connection_subject(ctx: ApiContext, connection_id: str, user_id: str) -> Response:
    """Like `roster connection unlink`: after a legitimate change at the IdP (an account
    recreated), audited ``sso:subject:unlink``; 404 when the user has no link here."""
    unlink_user(ctx.session, _connection(ctx, connection_id), user_id, ctx.actor)
    return Response(status=204)


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>/metadata/refresh",
           methods=["POST"], permission="connections:write", tags=["sso"],
           summary="Re-read the SAML IdP metadata from its https URL",
           response=ConnectionSchema, own_writes=True, errors=(400, 409))
def refresh_connection_metadata(ctx: ApiContext, connection_id: str) -> Response:
    """Fetch the metadata URL again (certificate rollover at the IdP)."""
    assert ctx.org is not None
    url = metadata_url_of(_connection(ctx, connection_id))
    xml = fetch_metadata(url, private_ok=_private_ok())
    with _write().transaction() as s:
        conn = _in_org(s.get(SsoConnection, connection_id), ctx.org.id)
        return _dumped(apply_fetched_metadata(s, conn, url, xml, ctx.actor))


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>/domains", methods=["POST"],
           permission="connections:write", tags=["sso"],
           summary="Add an email domain (unverified, not routed yet)",
           body=DomainCreateSchema, response=DomainSchema, status=201)
def add_connection_domain(ctx: ApiContext, connection_id: str) -> ConnectionDomain:
    """Attach an email domain; discovery routes it once an operator verifies it."""
    return add_domain(ctx.session, _connection(ctx, connection_id), ctx.body["domain"],
                      ctx.actor)


@api_route(bp, "/orgs/<org_id>/connections/<connection_id>/domains/<domain>/verify",
           methods=["POST"], permission="connections:verify", tags=["sso"],
           summary="Mark a domain verified: discovery routes its addresses from now on",
           response=DomainSchema)
def verify_connection_domain(ctx: ApiContext, connection_id: str,
                             domain: str) -> ConnectionDomain:
    """Operator-verified domain ownership (like `roster connection domain verify`)."""
    return verify_domain(ctx.session, _connection(ctx, connection_id), domain, ctx.actor)
