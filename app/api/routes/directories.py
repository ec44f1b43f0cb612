"""Directories of an organization and their SCIM bearer tokens (admin: own organization)."""

from __future__ import annotations

from types import SimpleNamespace

from flask import current_app
from marshmallow import Schema, fields
from sqlalchemy import select

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page
from app.api.schemas import CredentialSchema, NameLength, PageArgs, StrictSchema
from app.api.views import bp
from app.directory.directories import create_directory, get_directory, set_directory_status
from app.directory.tokens import issue_token, revoke_token
from app.models import Directory, DirectoryToken
from app.models.directory import DirectoryStatus, Vendor


class DirectorySchema(Schema):
    """One SCIM connection from an IdP into the organization."""

    id = fields.String(required=True)
    organization_id = fields.String(required=True)
    name = fields.String(required=True)
    vendor = fields.Enum(Vendor, by_value=True, required=True)
    status = fields.Enum(DirectoryStatus, by_value=True, required=True)
    created_at = fields.AwareDateTime(required=True)
    scim_base_url = fields.Method("_scim_url", required=True,
                                  metadata={"type": "string", "format": "uri"})

    def _scim_url(self, _directory: Directory) -> str:
        return f"{current_app.config['ROSTER']['app']['base_url'].rstrip('/')}/scim/v2"


class DirectoryArgs(PageArgs):
    """Directory list filters."""

    status = fields.Enum(DirectoryStatus, by_value=True)
    vendor = fields.Enum(Vendor, by_value=True)


class DirectoryCreateSchema(StrictSchema):
    """A new directory; its first token is issued with it."""

    vendor = fields.Enum(Vendor, by_value=True, required=True)
    name = fields.String(validate=NameLength(optional=True), metadata={
        "description": "Unique in the organization (default: the vendor)."})


class TokenSchema(CredentialSchema):
    """A SCIM bearer token, without its secret."""

    id = fields.String(required=True)
    directory_id = fields.String(required=True)


class IssuedTokenSchema(TokenSchema):
    """A token just issued: the only response that carries its plaintext."""

    token = fields.String(required=True, metadata={"description": "Shown once; store it."})


class DirectoryCreatedSchema(DirectorySchema):
    """A new directory with its first token (the plaintext is shown once)."""

    token = fields.Nested(IssuedTokenSchema, required=True)


TOKEN_COLUMNS = ("id", "directory_id", "prefix", "created_at", "last_used_at", "expires_at",
                 "revoked_at")
DIRECTORY_COLUMNS = ("id", "organization_id", "name", "vendor", "status", "created_at")


def _with(row: object, columns: tuple[str, ...], **extra: object) -> SimpleNamespace:
    """A row's columns plus values shown in this response only (never stored)."""
    return SimpleNamespace(**{c: getattr(row, c) for c in columns}, **extra)


def _issue(ctx: ApiContext, directory: Directory) -> SimpleNamespace:
    """Issue a token and return it with its plaintext, for this one response."""
    settings = current_app.config["ROSTER"]["tokens"]
    token, plaintext = issue_token(ctx.session, directory, ctx.actor,
                                   days=settings["scim_token_days"],
                                   max_valid=settings["max_valid_per_directory"])
    return _with(token, TOKEN_COLUMNS, token=plaintext)


def _directory(ctx: ApiContext, directory_id: str) -> Directory:
    assert ctx.org is not None
    return get_directory(ctx.session, directory_id, ctx.org)


@api_route(bp, "/orgs/<org_id>/directories", methods=["GET"], permission="directories:read",
           tags=["directories"], summary="List directories", query=DirectoryArgs,
           response=DirectorySchema, paginated=True)
def list_directories(ctx: ApiContext) -> Page:
    """The organization's directories, oldest first; filter by status or vendor."""
    assert ctx.org is not None
    stmt = select(Directory).where(Directory.organization_id == ctx.org.id)
    if "status" in ctx.args:
        stmt = stmt.where(Directory.status == ctx.args["status"])
    if "vendor" in ctx.args:
        stmt = stmt.where(Directory.vendor == ctx.args["vendor"])
    return ctx.paginate(stmt, (Directory.created_at, Directory.id))


@api_route(bp, "/orgs/<org_id>/directories", methods=["POST"],
           permission="directories:write", tags=["directories"],
           summary="Create a directory and its first SCIM token", body=DirectoryCreateSchema,
           response=DirectoryCreatedSchema, status=201)
def create_directory_(ctx: ApiContext) -> SimpleNamespace:
    """Create a directory; the response carries its SCIM token once."""
    assert ctx.org is not None
    vendor = ctx.body["vendor"].value
    directory = create_directory(ctx.session, ctx.org, ctx.body.get("name") or vendor, vendor,
                                 ctx.actor)
    return _with(directory, DIRECTORY_COLUMNS, token=_issue(ctx, directory))


@api_route(bp, "/orgs/<org_id>/directories/<directory_id>", methods=["GET"],
           permission="directories:read", tags=["directories"],
           summary="Get a directory (by id or name)", response=DirectorySchema)
def get_directory_(ctx: ApiContext, directory_id: str) -> Directory:
    """One directory of the organization."""
    return _directory(ctx, directory_id)


@api_route(bp, "/orgs/<org_id>/directories/<directory_id>/disable", methods=["POST"],
           permission="directories:write", tags=["directories"],
           summary="Disable a directory (it refuses every SCIM request)",
           response=DirectorySchema)
def disable_directory(ctx: ApiContext, directory_id: str) -> Directory:
    """Stop accepting SCIM traffic for this directory."""
    return set_directory_status(ctx.session, _directory(ctx, directory_id), "disabled",
                                ctx.actor)


@api_route(bp, "/orgs/<org_id>/directories/<directory_id>/enable", methods=["POST"],
           permission="directories:write", tags=["directories"],
           summary="Enable a disabled directory", response=DirectorySchema)
def enable_directory(ctx: ApiContext, directory_id: str) -> Directory:
    """Accept SCIM traffic again."""
    return set_directory_status(ctx.session, _directory(ctx, directory_id), "active",
                                ctx.actor)


@api_route(bp, "/orgs/<org_id>/directories/<directory_id>/tokens", methods=["GET"],
           permission="tokens:read", tags=["directories"],
           summary="List a directory's SCIM tokens (prefixes only)", query=PageArgs,
           response=TokenSchema, paginated=True)
def list_tokens(ctx: ApiContext, directory_id: str) -> Page:
    """Every token of the directory, oldest first; secrets are never stored."""
    directory = _directory(ctx, directory_id)
    stmt = select(DirectoryToken).where(DirectoryToken.directory_id == directory.id)
    return ctx.paginate(stmt, (DirectoryToken.created_at, DirectoryToken.id))


@api_route(bp, "/orgs/<org_id>/directories/<directory_id>/tokens", methods=["POST"],
           permission="tokens:write", tags=["directories"],
           summary="Rotate: issue a new SCIM token (the old one works until revoked)",
           response=IssuedTokenSchema, status=201, errors=(409,))
def rotate_token(ctx: ApiContext, directory_id: str) -> SimpleNamespace:
    """Issue a new token; the plaintext is in this response only."""
    return _issue(ctx, _directory(ctx, directory_id))


@api_route(bp, "/orgs/<org_id>/directories/<directory_id>/tokens/<token_id>/revoke",
           methods=["POST"], permission="tokens:write", tags=["directories"],
           summary="Revoke a SCIM token (by id or prefix); it stops working at once",
           response=TokenSchema)
def revoke_token_(ctx: ApiContext, directory_id: str, token_id: str) -> DirectoryToken:
    """Revoke one token of the directory."""
    return revoke_token(ctx.session, _directory(ctx, directory_id), token_id, ctx.actor)
