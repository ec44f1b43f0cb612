"""GET /api/v1/audit: the audit log, filtered and paged (auditors and admins: own org)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import Select, and_, select

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page, within
from app.api.schemas import TimeRangeArgs
from app.api.views import bp
from app.audit.export import about_subject, action_is
from app.audit.horizon import settled_through
from app.models import AuditEvent


class AuditEventSchema(Schema):
    """One hash-chained audit event."""

    id = fields.Integer(required=True, metadata={"description": "Position in the log."})
    event_id = fields.String(required=True)
    organization_id = fields.String(required=True, allow_none=True)
    chain = fields.String(required=True)
    seq = fields.Integer(required=True)
    occurred_at = fields.AwareDateTime(required=True)
    action = fields.String(required=True, metadata={"description": "noun:verb"})
    actor_type = fields.String(required=True)
    actor_id = fields.String(required=True, allow_none=True)
    subject_type = fields.String(required=True)
    subject_id = fields.String(required=True, allow_none=True)
    request_id = fields.String(required=True, allow_none=True)
    data = fields.Dict(required=True)
    prev_hash = fields.String(required=True)
    hash = fields.String(required=True)


_SHORT = validate.Length(min=1, max=100)


class AuditArgs(TimeRangeArgs):
    """Audit filters; org-bound keys always see only their own organization."""

    organization = fields.String(validate=_SHORT,
                                 metadata={"description": "Organization id or slug."})
    action = fields.String(validate=_SHORT, metadata={
        "description": "An action (user:deprovision), or a noun with ':*' (user:*)."})
    subject_type = fields.String(validate=_SHORT)
    subject_id = fields.String(validate=_SHORT, metadata={
        "description": "Every event about this subject (alone or with subject_type=user: "
                       "a user's grant events and its groups' membership events too)."})
    actor_type = fields.String(validate=_SHORT)
    actor_id = fields.String(validate=_SHORT)


def audit_query(ctx: ApiContext, args: dict[str, Any]) -> Select[Any]:
    """The audit events the caller may see that match ``args`` (reused by exports)."""
    stmt = select(AuditEvent)
    organization_id = ctx.org_filter(args.get("organization"))
    if organization_id is not None:
        stmt = stmt.where(AuditEvent.organization_id == organization_id)
    stmt = within(stmt, AuditEvent.occurred_at, args)
    if action := args.get("action"):
        stmt = stmt.where(action_is(action))
    for name in ("actor_type", "actor_id"):
        if name in args:
            stmt = stmt.where(getattr(AuditEvent, name) == args[name])
    return _subject(stmt, args.get("subject_type"), args.get("subject_id"))


def _subject(stmt: Select[Any], subject_type: str | None,
             subject_id: str | None) -> Select[Any]:
    """A subject id alone, or a user's, selects every event about it as the export does
    (app/audit/export.py ``about_subject``): a user's grant events recorded under the
    grant before too, and the membership events (subject the group) naming it a member.
    Any other subject type matches both columns exactly."""
    if subject_id is not None and subject_type in (None, "user"):
        about = about_subject(subject_id)
        if subject_type == "user":
            about = and_(AuditEvent.subject_type.in_(("user", "grant", "group")), about)
        return stmt.where(about)
    if subject_type is not None:
        stmt = stmt.where(AuditEvent.subject_type == subject_type)
    if subject_id is not None:
        stmt = stmt.where(AuditEvent.subject_id == subject_id)
    return stmt


@api_route(bp, "/audit", methods=["GET"], permission="audit:read", tags=["audit"],
           summary="List audit events", query=AuditArgs, response=AuditEventSchema,
           paginated=True, errors=(503,))
def list_audit(ctx: ApiContext) -> Page:
    """Audit events in log order (oldest first), filtered; operators see every chain.

    One organization's records commit in id order. Across organizations they need not
    (PostgreSQL), so such a page stops at the newest id no commit can still land below
    (app/audit/horizon.py): its cursor never passes a record committed later."""
    stmt = audit_query(ctx, ctx.args)
    if ctx.args.get("organization") is None and ctx.scope_org_id is None:
        settled = settled_through(ctx.session)
        if settled is not None:
            stmt = stmt.where(AuditEvent.id <= settled)
    return ctx.paginate(stmt, (AuditEvent.id,))
