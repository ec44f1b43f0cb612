"""Schemas of /api/v1 SSO connections (app/api/routes/connections.py): what a connection
shows (never its client secret, its IdP URLs' credentials masked) and what create and update
take."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import object_session

from app.api.schemas import JsonBoolean, NameLength, StrictSchema
from app.events.endpoints import endpoint_key
from app.models.sso import ConnectionDomain, SsoConnection
from app.sso.connections import MATCH_BY, POLICIES
from app.sso.oidc_config import SUPPORTED_ALGORITHMS, algorithms_of, groups_claim_of
from app.sso.oidc_rp import callback_url, logged_out_url
from app.sso.saml import SpUrls


class ShownUrl(fields.String):
    """An IdP URL as shown: its userinfo (RFC 3986 §3.2.1) and secret query values masked,
    opaque segments fingerprinted, as webhook URLs are (app/events/endpoints.py). The
    stored URL keeps them: fetches need them, an admin only needs to tell URLs apart."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else endpoint_key(str(value))


class DomainSchema(Schema):
    """An email domain of a connection; routed by discovery once verified."""

    domain = fields.String(required=True)
    verified = fields.Function(lambda d: d.verified_at is not None, required=True)
    verified_at = fields.AwareDateTime(required=True, allow_none=True)


class ConnectionSchema(Schema):
    """One SAML or OIDC connection. The OIDC client secret is never returned."""

    id = fields.String(required=True)
    name = fields.String(required=True)
    protocol = fields.String(required=True)
    enabled = fields.Boolean(required=True)
    login_policy = fields.String(required=True)
    match_by = fields.String(required=True)
    directory_id = fields.String(allow_none=True)
    allow_idp_initiated = fields.Boolean(required=True)
    sign_requests = fields.Boolean(required=True)
    idp_entity_id = fields.String(allow_none=True)
    idp_sso_url = fields.String(allow_none=True)
    idp_slo_url = fields.String(allow_none=True)
    metadata_url = ShownUrl(allow_none=True, metadata={
        "description": "The IdP metadata URL, credentials masked (***)."})
    metadata_refreshed_at = fields.AwareDateTime(allow_none=True)
    certificates = fields.Function(lambda c: len(c.idp_certs or []), required=True)
    oidc_discovery_url = ShownUrl(allow_none=True, metadata={
        "description": "The OIDC discovery URL, credentials masked (***)."})
    oidc_client_id = fields.String(allow_none=True)
    oidc_client_secret_set = fields.Function(lambda c: bool(c.oidc_client_secret_enc),
                                             required=True)
    oidc_scopes = fields.String(allow_none=True)
    oidc_algorithms = fields.Function(algorithms_of, required=True)
    oidc_groups_claim = fields.Function(groups_claim_of, required=True)
    sp = fields.Method("_sp", required=True, metadata={
        "type": "object", "description": "What to register at the IdP: SAML entity id, ACS "
        "and SLO URLs, or the OIDC redirect and post-logout redirect URIs."})
    domains = fields.Method("_domains", required=True, metadata={
        "type": "array", "items": {"type": "object"}})
    created_at = fields.AwareDateTime(required=True)
    updated_at = fields.AwareDateTime(required=True)

    def _sp(self, conn: SsoConnection) -> dict[str, str]:
        base = current_app.config["ROSTER"]["app"]["base_url"]
        if conn.protocol == "oidc":
            return {"redirect_uri": callback_url(base, conn.id),
                    "post_logout_redirect_uri": logged_out_url(base, conn.id)}
        urls = SpUrls.of(base, conn.id)
        return {"entity_id": urls.entity_id, "metadata_url": urls.entity_id, "acs": urls.acs,
                "slo": urls.slo}

    def _domains(self, conn: SsoConnection) -> list[dict[str, Any]]:
        session = object_session(conn)
        found = session.scalars(select(ConnectionDomain).where(
            ConnectionDomain.connection_id == conn.id).order_by(ConnectionDomain.domain)) \
            if session is not None else []
        return [DomainSchema().dump(d) for d in found]


class _Settings(StrictSchema):
    """Fields shared by create and update."""

    login_policy = fields.String(validate=validate.OneOf(POLICIES))
    match_by = fields.String(validate=validate.OneOf(MATCH_BY))
    directory = fields.String(allow_none=True, validate=validate.Length(min=1, max=200),
                              metadata={"description": "Directory (id or name) users are read "
                                        "from and JIT users written to; null for none."})
    allow_idp_initiated = JsonBoolean()
    sign_requests = JsonBoolean()
    metadata_xml = fields.String(validate=validate.Length(min=1, max=1_000_000), metadata={
        "description": "SAML: the IdP's metadata document."})
    metadata_url = fields.String(validate=validate.Length(min=9, max=1000), metadata={
        "description": "SAML: https URL of the IdP's metadata (kept for refresh)."})
    entity_id = fields.String(validate=validate.Length(max=1000), metadata={
        "description": "SAML: pick this IdP in a metadata aggregate."})
    discovery_url = fields.String(validate=validate.Length(max=1000), metadata={
        "description": "OIDC: https URL of /.well-known/openid-configuration."})
    client_id = fields.String(validate=validate.Length(min=1, max=500))
    client_secret = fields.String(load_only=True, validate=validate.Length(min=1, max=2000),
                                  metadata={"description": "Stored encrypted, never returned."})
    scopes = fields.String(validate=validate.Length(max=500))
    groups_claim = fields.String(validate=validate.Length(min=1, max=200))
    algorithms = fields.List(fields.String(validate=validate.OneOf(
        sorted(SUPPORTED_ALGORITHMS))), validate=validate.Length(min=1, max=20))
    # No load_default: given on a SAML connection, it is refused by name (connections.py).
    check_discovery = JsonBoolean(metadata={
        "description": "OIDC: read the discovery document now and refuse an unusable IdP "
                       "(default true)."})


class ConnectionCreateSchema(_Settings):
    """A new connection; SAML takes IdP metadata, OIDC a discovery URL and client."""

    name = fields.String(required=True, validate=NameLength())
    protocol = fields.String(required=True, validate=validate.OneOf(("saml", "oidc")))


class ConnectionUpdateSchema(_Settings):
    """Settings to change; absent fields are kept."""

    name = fields.String(validate=NameLength())
    enabled = JsonBoolean()


class DomainCreateSchema(StrictSchema):
    """An email domain to route to the connection once verified."""

    domain = fields.String(required=True, validate=validate.Length(min=1, max=253))
