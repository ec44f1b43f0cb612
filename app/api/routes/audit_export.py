"""GET /api/v1/audit/export: the audit log as CSV, JSON Lines or OCSF (3001, 3006), streamed."""

from __future__ import annotations

from flask import Response, current_app, stream_with_context
from marshmallow import fields, validate

from app.api.frame import ApiContext, api_route
from app.api.schemas import QueryInteger, TimeWindowArgs
from app.api.views import bp
from app.audit.export import FORMATS, AuditFilter, iter_events, position, render
from app.db import Database
from app.errors import InvalidInput

MEDIA_TYPES = {"csv": "text/csv", "jsonl": "application/jsonl",
               "ocsf": "application/jsonl"}
# The export's position: give it as after_id to export on from where this export ended.
POSITION_HEADER = "Roster-Audit-Position"


class ExportArgs(TimeWindowArgs):
    """Export filters; org-bound keys always export only their own organization. ``since``
    and ``until`` are read as /audit reads them."""

    format = fields.String(load_default="jsonl", validate=validate.OneOf(FORMATS))
    organization = fields.String(validate=validate.Length(min=1, max=100))
    action = fields.String(validate=validate.Length(min=1, max=100), metadata={
        "description": "An action (user:deprovision), or a noun with ':*' (user:*)."})
    subject_id = fields.String(validate=validate.Length(min=1, max=100), metadata={
        "description": "Every event about this subject; for a user, its grant events and "
                       "its groups' membership events too."})
    after_seq = QueryInteger(validate=validate.Range(min=0, max=2**63 - 1), metadata={
        "description": "Only the organization's records after this seq, in seq order: "
                       "export on from the last seq of the previous export and miss none "
                       "(since/until select by occurred_at, which a late commit misses)."})
    after_id = QueryInteger(validate=validate.Range(min=0, max=2**63 - 1), metadata={
        "description": "Only records after this position: the Roster-Audit-Position header "
                       "of the previous export with the same filters. Across organizations "
                       "too; an incremental export that misses none."})


@api_route(bp, "/audit/export", methods=["GET"], permission="audit:read", tags=["audit"],
           summary="Export audit events (csv, jsonl, ocsf)", query=ExportArgs,
           produces={"text/csv": "format=csv", "application/jsonl": "format=jsonl or ocsf"},
           headers={POSITION_HEADER: "The id this export runs through: after_id for the "
                                     "next export with the same filters."},
           errors=(503,))
def export_audit(ctx: ApiContext) -> Response:
    """The whole filtered log in one streamed response (its own read transaction), up to
    its position (``Roster-Audit-Position``), found first: a 503 to retry, while an append
    in flight does not settle, comes before the 200 streams (app/audit/horizon.py)."""
    args = ctx.args
    organization_id = ctx.org_filter(args.get("organization"))
    after_id = args.get("after_id", 0)
    if args.get("after_seq") is not None:  # before the 200 streams
        if organization_id is None:
            raise InvalidInput("after_seq needs one organization (organization=...): seq "
                               "counts per organization's chain", field="after_seq")
        if "after_id" in args:
            raise InvalidInput("give after_seq or after_id, not both", field="after_id")
    through = max(position(ctx.session, organization_id), after_id)
    flt = AuditFilter(organization_id=organization_id,
                      since=args.get("since"), until=args.get("until"),
                      action=args.get("action"), subject_id=args.get("subject_id"),
                      after_seq=args.get("after_seq"), after_id=after_id, through_id=through)
    db: Database = current_app.extensions["roster.db"]
    fmt = args["format"]

    def generate():  # noqa: ANN202  a generator of text chunks
        with db.transaction(readonly=True) as session:
            yield from render(iter_events(session, flt), fmt, flt.subject_id)

    filename = f"roster-audit.{'csv' if fmt == 'csv' else 'jsonl'}"
    return Response(stream_with_context(generate()), mimetype=MEDIA_TYPES[fmt], headers={
        "Content-Disposition": f'attachment; filename="{filename}"',
        POSITION_HEADER: str(through)})
