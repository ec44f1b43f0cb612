"""Failed-login traces of an organization (issue 8); connections are in connections.py."""

from __future__ import annotations

from flask import current_app
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page
from app.api.schemas import PageArgs
from app.api.views import bp
from app.errors import NotFound
from app.models.sso import LoginTrace
from app.sso.traces import expires_at, kept_since


class TraceSchema(Schema):
    """A failed login: its correlation id, reason and redacted payload."""

    id = fields.String(required=True, metadata={"description": "The correlation id."})
    connection_id = fields.String(allow_none=True)
    protocol = fields.String(required=True)
    reason = fields.String(required=True)
    detail = fields.String(required=True)
    subject = fields.String(allow_none=True)
    payload = fields.Dict(required=True)
    request_id = fields.String(allow_none=True)
    created_at = fields.AwareDateTime(required=True)
    expires_at = fields.Method("_expires_at", required=True, metadata={
        "type": "string", "format": "date-time",
        "description": "created_at plus sso.trace_retention_days as it is now."})

    def _expires_at(self, trace: LoginTrace) -> str:
        return expires_at(trace, _retention_days()).isoformat()


def _retention_days() -> int:
    return int(current_app.config["ROSTER"]["sso"]["trace_retention_days"])


class TraceArgs(PageArgs):
    """Trace list filters."""

    # Not empty (it matched nothing: an empty list, where every other filter is a 400) nor
    # longer than the column.
    reason = fields.String(validate=validate.Length(min=1, max=50), metadata={
        "description": "Only this reason (e.g. replay)."})


@api_route(bp, "/orgs/<org_id>/sso/traces", methods=["GET"], permission="traces:read",
           tags=["sso"], summary="List failed-login traces", query=TraceArgs,
           response=TraceSchema, paginated=True)
def list_traces(ctx: ApiContext) -> Page:
    """Unexpired failed logins of the organization, oldest first; filter by reason."""
    assert ctx.org is not None
    stmt = select(LoginTrace).where(LoginTrace.organization_id == ctx.org.id,
                                    LoginTrace.created_at > kept_since(_retention_days()))
    if "reason" in ctx.args:
        stmt = stmt.where(LoginTrace.reason == ctx.args["reason"])
    return ctx.paginate(stmt, (LoginTrace.created_at, LoginTrace.id))


@api_route(bp, "/orgs/<org_id>/sso/traces/<trace_id>", methods=["GET"],
           permission="traces:read", tags=["sso"],
           summary="Get a failed-login trace by correlation id", response=TraceSchema)
def get_trace(ctx: ApiContext, trace_id: str) -> LoginTrace:
    """The trace a user's refusal page named."""
    assert ctx.org is not None
    trace = ctx.session.get(LoginTrace, trace_id) if len(trace_id) <= 36 else None
    if trace is None or trace.organization_id != ctx.org.id or \
            trace.created_at <= kept_since(_retention_days()):
        raise NotFound("no such trace in your organization")
    return trace
