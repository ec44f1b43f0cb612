"""The role catalog of an organization, and custom roles (operator, admin of the org)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page
from app.api.schemas import FreeText, NameLength, PageArgs, StrictSchema
from app.api.views import bp
from app.mapping.catalog import PARAMETER_TYPES, PERMISSIONS, RoleSpec
from app.mapping.roles import add_role
from app.models import Role

_PARAMETER_DOC = ("Typed parameters: {name: {type: money|int|bool, default}}; money is "
                  "{amount: \"1000\", currency: \"EUR\"}.")


class ParameterSchema(StrictSchema):
    """A typed role parameter and its default value."""

    type = fields.String(required=True, validate=validate.OneOf(PARAMETER_TYPES))
    default = fields.Raw(required=True, allow_none=True)


class RoleSchema(Schema):
    """A named set of portal permissions with typed parameters."""

    id = fields.String(required=True)
    key = fields.String(required=True)
    name = fields.String(required=True)
    description = fields.String(required=True)
    permissions = fields.List(fields.String(), required=True)
    parameters = fields.Dict(keys=fields.String(), values=fields.Nested(ParameterSchema),
                             required=True, metadata={"description": _PARAMETER_DOC})
    custom = fields.Boolean(required=True)
    created_at = fields.AwareDateTime(required=True)


class RoleArgs(PageArgs):
    """Role list filters."""

    custom = fields.Boolean(metadata={"description": "true: only custom roles; false: only "
                                                     "the standard catalog."})


class RoleCreateSchema(StrictSchema):
    """A custom role; permissions come from the closed portal vocabulary."""

    key = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z0-9_]{1,64}\Z", error="lower-case letters, digits and _, 1-64 long"))
    name = fields.String(required=True, validate=NameLength())
    description = fields.String(load_default="", validate=[validate.Length(max=1000), FreeText()],
                                metadata={"description": "One line, at most 1000 characters, "
                                          "no control characters; may be empty."})
    permissions = fields.List(
        fields.String(validate=validate.Length(min=1, max=100)), load_default=list,
        metadata={"description": "Any of: " + ", ".join(sorted(PERMISSIONS))})
    parameters = fields.Dict(keys=fields.String(validate=validate.Length(min=1, max=64)),
                             values=fields.Dict(), load_default=dict,
                             metadata={"description": _PARAMETER_DOC})


@api_route(bp, "/orgs/<org_id>/roles", methods=["GET"], permission="roles:read",
           tags=["roles"], summary="List the role catalog", query=RoleArgs,
           response=RoleSchema, paginated=True)
def list_roles(ctx: ApiContext) -> Page:
    """The organization's roles (standard and custom), oldest first."""
    assert ctx.org is not None
    stmt = select(Role).where(Role.organization_id == ctx.org.id)
    if "custom" in ctx.args:
        stmt = stmt.where(Role.custom == ctx.args["custom"])
    return ctx.paginate(stmt, (Role.created_at, Role.id))


@api_route(bp, "/orgs/<org_id>/roles", methods=["POST"], permission="roles:write",
           tags=["roles"], summary="Create a custom role", body=RoleCreateSchema,
           response=RoleSchema, status=201)
def create_role(ctx: ApiContext) -> Role:
    """Add a custom role; unknown permissions or badly typed defaults are a 400."""
    assert ctx.org is not None
    body: dict[str, Any] = ctx.body
    spec = RoleSpec(key=body["key"], name=body["name"], description=body["description"],
                    permissions=tuple(body["permissions"]), parameters=body["parameters"])
    return add_role(ctx.session, ctx.org, spec, ctx.actor)
