"""A directory's IdP dialect report and its SCIM flight recorder (issue 5).

``GET /api/v1/directories/{id}/dialect`` says in plain words which dialect the tenant's
IdP speaks; ``GET /api/v1/directories/{id}/requests`` shows what it sent and what Roster
answered (bodies redacted), so an admin can see why a request failed. It pages as every
list (``limit`` 1-200, ``next_cursor``), newest first: the recorder keeps the newest
``recorder.max_per_directory`` requests, and the newest are the ones asked about.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page
from app.api.schemas import PageArgs
from app.api.views import bp
from app.directory.directories import get_directory, missing_directory
from app.models import Directory
from app.models.scim_ops import ScimRequest
from app.scim.dialect_report import dialect_report
from app.scim.recorder import describe, requests_query


class NoteSchema(Schema):
    """One normalisation and how often the IdP needed it."""

    note = fields.String(required=True)
    count = fields.Integer(required=True)
    meaning = fields.String(required=True)
    first_seen_at = fields.String(required=True, metadata={"format": "date-time"})
    last_seen_at = fields.String(required=True, metadata={"format": "date-time"})


class DialectSchema(Schema):
    """The dialect label, advice in plain words, and every counter."""

    directory_id = fields.String(required=True)
    dialect = fields.String(required=True, metadata={"enum": [
        "standard", "okta", "entra-legacy", "entra-compliant", "entra-mixed",
        "scim-with-quirks"]})
    summary = fields.String(required=True)
    notes = fields.List(fields.Nested(NoteSchema), required=True)


class RequestArgs(PageArgs):
    """Filters of the flight recorder listing, and its page (``limit``, ``cursor``)."""

    failed = fields.Boolean(load_default=False,
                            metadata={"description": "Only requests answered >= 400."})


class RecordedRequestSchema(Schema):
    """One SCIM request and its response, as kept (bodies redacted)."""

    id = fields.Integer(required=True)
    at = fields.String(required=True, metadata={"format": "date-time"})
    request_id = fields.String(required=True, allow_none=True)
    method = fields.String(required=True)
    path = fields.String(required=True)
    query = fields.String(required=True)
    status = fields.Integer(required=True)
    duration_ms = fields.Float(required=True)
    notes = fields.List(fields.String(), required=True)
    user_agent = fields.String(required=True, allow_none=True)
    request_body = fields.String(required=True, allow_none=True)
    response_body = fields.String(required=True, allow_none=True)


def _directory(ctx: ApiContext, directory_id: str) -> Directory:
    directory = get_directory(ctx.session, directory_id)
    ctx.check_org(directory.organization_id, missing_directory(directory_id))
    return directory


@api_route(bp, "/directories/<directory_id>/dialect", methods=["GET"],
           permission="dialects:read", tags=["directories"],
           summary="Which IdP dialect the directory speaks, in plain words",
           response=DialectSchema)
def directory_dialect(ctx: ApiContext, directory_id: str) -> dict[str, Any]:
    """Every normalisation Roster applied to this directory's requests, counted."""
    return dialect_report(ctx.session, _directory(ctx, directory_id).id)


@api_route(bp, "/directories/<directory_id>/requests", methods=["GET"],
           permission="dialects:read", tags=["directories"],
           summary="The SCIM flight recorder: recent requests and responses, redacted",
           query=RequestArgs, response=RecordedRequestSchema, paginated=True)
def directory_requests(ctx: ApiContext, directory_id: str) -> Page:
    """The directory's recorded SCIM requests, newest first, one page; ``failed`` keeps
    errors only. ``next_cursor`` goes on to older ones."""
    directory = _directory(ctx, directory_id)
    page = ctx.paginate(requests_query(directory.id, failed=ctx.args["failed"]),
                        (ScimRequest.id,), descending=True)
    return Page([describe(row) for row in page.items], page.next_cursor)
