"""GET /api/v1/audit/export: the audit log as CSV, JSON Lines or OCSF (3001), streamed."""

from __future__ import annotations

from flask import Response, current_app, stream_with_context
from marshmallow import fields, validate

from app.api.frame import ApiContext, api_route
from app.api.schemas import TimeWindowArgs
from app.api.views import bp
from app.audit.export import FORMATS, AuditFilter, iter_events, render
from app.db import Database
from app.errors import InvalidInput

MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl",
               "ocsf": "application/jsonl"}


class ExportArgs(TimeWindowArgs):
    """Export filters; org-bound keys always export only their own organization. ``since``
    and ``until`` are read as /audit reads them."""

    format = fields.String(load_default="jsonl", validate=validate.OneOf(FORMATS))
    organization = fields.String(validate=validate.Length(min=1, max=100))
    action = fields.String(validate=validate.Length(min=1, max=100))
    subject_id = fields.String(validate=validate.Length(min=1, max=100))
    after_seq = fields.Integer(validate=validate.Range(min=0, max=2**63 - 1), metadata={
        "description": "Only the organization's records after this seq, in seq order: "
                       "export on from the last seq of the previous export and miss none "
                       "(since/until select by occurred_at, which a late commit misses)."})


@api_route(bp, "/audit/export", methods=["GET"], permission="audit:read", tags=["audit"],
           summary="Export audit events (csv, jsonl, ocsf)", query=ExportArgs,
           produces={"text/csv": "format=csv", "application/jsonl": "format=jsonl or ocsf"})
def export_audit(ctx: ApiContext) -> Response:
    """The whole filtered log in one streamed response (its own read transaction)."""
    args = ctx.args
    flt = AuditFilter(organization_id=ctx.org_filter(args.get("organization")),
                      since=args.get("since"), until=args.get("until"),
                      action=args.get("action"), subject_id=args.get("subject_id"),
                      after_seq=args.get("after_seq"))
    if flt.after_seq is not None and flt.organization_id is None:  # before the 200 streams
        raise InvalidInput("after_seq needs one organization (organization=...): seq counts "
                           "per organization's chain", field="after_seq")
    db: Database = current_app.extensions["roster.db"]
    fmt = args["format"]

    def generate():  # noqa: ANN202  a generator of text chunks
        with db.transaction(readonly=True) as session:
            yield from render(iter_events(session, flt), fmt)

    filename = f"roster-audit.{'csv' if fmt == 'csv' else 'jsonl'}"
    return Response(stream_with_context(generate()), mimetype=MEDIA_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})
