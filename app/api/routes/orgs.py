"""Organizations (operator) and an organization's own record (its keys), units."""

from __future__ import annotations

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page
from app.api.schemas import NameLength, PageArgs, StrictSchema
from app.api.views import bp
from app.directory.organizations import create_organization
from app.mapping.catalog import load_catalog
from app.mapping.new_units import add_unit_for_rules
from app.models import Organization, Unit
from app.models.organization import UnitKind
from app.settings import ROOT

ROLES_FILE = ROOT / "config" / "roles.toml"


class OrganizationSchema(Schema):
    """A customer business account."""

    id = fields.String(required=True)
    slug = fields.String(required=True)
    name = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)


class OrganizationCreateSchema(StrictSchema):
    """A new organization; its role catalog is seeded from config/roles.toml."""

    slug = fields.String(required=True, validate=validate.Regexp(
        r"^[a-z0-9][a-z0-9-]{0,62}\Z", error="lower-case letters, digits and '-', 1-63 long"))
    name = fields.String(validate=NameLength(optional=True), metadata={
        "description": "Default: the slug."})


class UnitSchema(Schema):
    """A department, cost center, team or location."""

    id = fields.String(required=True)
    parent_id = fields.String(required=True, allow_none=True)
    kind = fields.Enum(UnitKind, by_value=True, required=True)
    name = fields.String(required=True)
    path = fields.String(required=True)
    created_at = fields.AwareDateTime(required=True)


class UnitArgs(PageArgs):
    """Unit list filters."""

    kind = fields.Enum(UnitKind, by_value=True)


class UnitCreateSchema(StrictSchema):
    """A new unit under ``parent`` (a path like ``Engineering/Tokyo`` or an id)."""

    name = fields.String(required=True, validate=NameLength(), metadata={
        "description": "No '/'; leading and trailing spaces are dropped."})
    kind = fields.Enum(UnitKind, by_value=True, required=True)
    parent = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(min=1, max=1000))


@api_route(bp, "/orgs", methods=["GET"], permission="orgs:list", tags=["organizations"],
           summary="List organizations", query=PageArgs, response=OrganizationSchema,
           paginated=True)
def list_orgs(ctx: ApiContext) -> Page:
    """Every organization, oldest first."""
    return ctx.paginate(select(Organization), (Organization.created_at, Organization.id))


@api_route(bp, "/orgs", methods=["POST"], permission="orgs:write", tags=["organizations"],
           summary="Create an organization", body=OrganizationCreateSchema,
           response=OrganizationSchema, status=201)
def create_org(ctx: ApiContext) -> Organization:
    """Create a tenant and seed its role catalog."""
    return create_organization(ctx.session, ctx.body["slug"], ctx.body.get("name", ""),
                               load_catalog(ROLES_FILE), ctx.actor)


@api_route(bp, "/orgs/<org_id>", methods=["GET"], permission="orgs:read",
           tags=["organizations"], summary="Get an organization (by id or slug)",
           response=OrganizationSchema)
def get_org(ctx: ApiContext) -> Organization | None:
    """One organization; org-bound keys see only their own."""
    return ctx.org


@api_route(bp, "/orgs/<org_id>/units", methods=["GET"], permission="units:read",
           tags=["units"], summary="List units", query=UnitArgs, response=UnitSchema,
           paginated=True)
def list_units(ctx: ApiContext) -> Page:
    """The organization's units, oldest first; filter by kind."""
    assert ctx.org is not None
    stmt = select(Unit).where(Unit.organization_id == ctx.org.id)
    if "kind" in ctx.args:
        stmt = stmt.where(Unit.kind == ctx.args["kind"])
    return ctx.paginate(stmt, (Unit.created_at, Unit.id))


@api_route(bp, "/orgs/<org_id>/units", methods=["POST"], permission="units:write",
           tags=["units"], summary="Create a unit", body=UnitCreateSchema,
           response=UnitSchema, status=201)
def create_unit(ctx: ApiContext) -> Unit:
    """Add a unit to the organization's tree; users a rule now grants in it get the grant
    in the same transaction (app/mapping/new_units.py)."""
    assert ctx.org is not None
    unit, _summary = add_unit_for_rules(ctx.session, ctx.org, ctx.body["name"],
                                        ctx.body["kind"].value, ctx.body["parent"], ctx.actor)
    return unit
