"""API keys, managed by operators over the API (the CLI does the same)."""

from __future__ import annotations

from types import SimpleNamespace

from marshmallow import fields, validate
from sqlalchemy import select

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page
from app.api.schemas import CredentialSchema, NameLength, PageArgs, StrictSchema
from app.api.views import bp
from app.directory.apikeys import create_key, get_key, revoke_key
from app.directory.organizations import get_organization
from app.models.api import ApiKey, ApiRole

KEY_COLUMNS = ("id", "role", "organization_id", "prefix", "name", "created_at",
               "last_used_at", "expires_at", "revoked_at")


class ApiKeySchema(CredentialSchema):
    """An API key without its secret."""

    id = fields.String(required=True)
    role = fields.Enum(ApiRole, by_value=True, required=True)
    organization_id = fields.String(required=True, allow_none=True)
    name = fields.String(required=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    """A key just created: the only response that carries it."""

    key = fields.String(required=True, metadata={"description": "Shown once; store it."})


class ApiKeyArgs(PageArgs):
    """API key list filters."""

    organization = fields.String(validate=validate.Length(min=1, max=64),
                                 metadata={"description": "Organization id or slug."})
    role = fields.Enum(ApiRole, by_value=True)


class ApiKeyCreateSchema(StrictSchema):
    """A new key: operator keys are deployment-wide, the others need an organization."""

    role = fields.Enum(ApiRole, by_value=True, required=True)
    organization = fields.String(load_default=None, allow_none=True,
                                 validate=validate.Length(min=1, max=64),
                                 metadata={"description": "Organization id or slug."})
    name = fields.String(validate=NameLength(optional=True),
                         metadata={"description": "Default: none."})
    expires_at = fields.AwareDateTime(load_default=None, allow_none=True)


@api_route(bp, "/apikeys", methods=["GET"], permission="apikeys:read", tags=["apikeys"],
           summary="List API keys", query=ApiKeyArgs, response=ApiKeySchema, paginated=True)
def list_apikeys(ctx: ApiContext) -> Page:
    """Keys, oldest first; filter by organization or role."""
    stmt = select(ApiKey)
    if "organization" in ctx.args:
        stmt = stmt.where(ApiKey.organization_id == ctx.org_filter(ctx.args["organization"]))
    if "role" in ctx.args:
        stmt = stmt.where(ApiKey.role == ctx.args["role"])
    return ctx.paginate(stmt, (ApiKey.created_at, ApiKey.id))


@api_route(bp, "/apikeys", methods=["POST"], permission="apikeys:write", tags=["apikeys"],
           summary="Create an API key (returned once)", body=ApiKeyCreateSchema,
           response=ApiKeyCreatedSchema, status=201)
def create_apikey(ctx: ApiContext) -> SimpleNamespace:
    """Issue a key; the response is the only place its plaintext appears."""
    ref = ctx.body["organization"]
    organization = get_organization(ctx.session, ref) if ref else None
    key, plaintext = create_key(ctx.session, ctx.body["role"].value, organization, ctx.actor,
                                name=ctx.body.get("name", ""), expires_at=ctx.body["expires_at"])
    return SimpleNamespace(**{c: getattr(key, c) for c in KEY_COLUMNS}, key=plaintext)


@api_route(bp, "/apikeys/<key_id>/revoke", methods=["POST"], permission="apikeys:write",
           tags=["apikeys"], summary="Revoke an API key (by id or prefix)",
           response=ApiKeySchema)
def revoke_apikey(ctx: ApiContext, key_id: str) -> ApiKey:
    """The key stops working at once."""
    return revoke_key(ctx.session, get_key(ctx.session, key_id), ctx.actor)
