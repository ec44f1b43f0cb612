"""GET /api/v1/audit/verify: check an organization's audit chain, as `roster audit verify`.

Each organization has its own hash chain (app/audit/log.py), so a check is per organization:
an org-bound key checks its own, an operator names one. One request checks at most
``limit`` records (default 10,000, at most 100,000: a few hundred milliseconds of hashing),
from ``after_seq`` on; a longer chain answers ``complete: false`` with ``next_after_seq``
to continue from. The stretch's signed checkpoints are checked with it, with this
deployment's key and the former ones configured (``signing.former_public_key_files``, which
`roster audit verify` uses too; read once as the app starts, app/api/setup.py); the last
stretch checks the chain head. Each stretch checks its share of the organization's
deprovisioning records against the digests and stamps their audit events hold
(app/audit/sealed_stretch.py): a request reads about what its stretch holds, not every
record the organization has; ``next_after_time`` (given back as ``after_time``) carries
where the next stretch's time window starts, which otherwise is read from the chain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import current_app
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from app.api.frame import ApiContext, api_route
from app.api.routes.deprovisions import deployment_key
from app.api.schemas import QueryInteger, StrictSchema
from app.api.setup import FORMER_KEYS
from app.api.views import bp
from app.audit.checkpoints import verify_checkpoints
from app.audit.log import chain_for
from app.audit.sealed_stretch import (
    plausible_window_start,
    verify_records_stretch,
    window_start,
)
from app.audit.signing import verification_keys
from app.audit.verify import verify_chain_page
from app.errors import InvalidInput
from app.models import AuditChainHead

DEFAULT_LIMIT, MAX_LIMIT = 10_000, 100_000
# The record problems listed in one answer (their count is always given).
MAX_PROBLEMS = 100


class VerifyArgs(StrictSchema):
    """Which organization's chain, and which stretch of it."""

    organization = fields.String(validate=validate.Length(min=1, max=100), metadata={
        "description": "Organization id or slug (an operator key must give one)."})
    after_seq = QueryInteger(load_default=0, validate=validate.Range(min=0, max=2**63 - 1),
                               metadata={"description": "Check the records after this seq "
                                         "(the next_after_seq of the previous answer)."})
    after_time = fields.AwareDateTime(metadata={
        "description": "The next_after_time of the previous answer, given with its "
                       "next_after_seq: where this stretch's time window for the "
                       "deprovisioning records starts. Without it, it is read from the "
                       "chain up to after_seq (one pass over those records)."})
    limit = QueryInteger(load_default=DEFAULT_LIMIT,
                           validate=validate.Range(min=1, max=MAX_LIMIT),
                           metadata={"description": "At most this many records."})


class BrokenLinkSchema(Schema):
    """The first record (or checkpoint, or the head) the check found wrong."""

    seq = fields.Integer(required=True, allow_none=True)
    event_id = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True)


class RecordProblemSchema(Schema):
    """A deprovisioning record the audit chain does not vouch for."""

    record_id = fields.String(required=True)
    event_id = fields.String(required=True, allow_none=True)
    reason = fields.String(required=True)


class RecordsCheckSchema(Schema):
    """The deprovisioning records checked against their audit events' digests."""

    checked = fields.Integer(required=True)
    sealed = fields.Integer(required=True, metadata={
        "description": "Records whose audit event holds a digest (newer than the check)."})
    problem_count = fields.Integer(required=True)
    problems = fields.List(fields.Nested(RecordProblemSchema), required=True, metadata={
        "description": f"The first {MAX_PROBLEMS} problems."})


class VerifySchema(Schema):
    """The outcome of one stretch of the check."""

    ok = fields.Boolean(required=True, metadata={
        "description": "Nothing wrong found in what this answer checked."})
    organization_id = fields.String(required=True)
    chain = fields.String(required=True)
    complete = fields.Boolean(required=True, metadata={
        "description": "The check reached the chain head (or stopped at a broken link)."})
    events_checked = fields.Integer(required=True)
    after_seq = fields.Integer(required=True)
    last_seq = fields.Integer(required=True, metadata={"description": "Last seq checked."})
    head_seq = fields.Integer(required=True)
    next_after_seq = fields.Integer(required=True, allow_none=True, metadata={
        "description": "Give it as after_seq to check on; null when done or broken."})
    next_after_time = fields.AwareDateTime(required=True, allow_none=True, metadata={
        "description": "Give it as after_time with next_after_seq: the latest occurred_at "
                       "up to last_seq, where the next stretch's time window starts."})
    key_id = fields.String(required=True, metadata={
        "description": "This deployment's key, which checkpoints are checked with."})
    former_key_ids = fields.List(fields.String(), required=True, metadata={
        "description": "The former keys (signing.former_public_key_files) checkpoints are "
                       "checked with too: those signed before a key rotation."})
    broken = fields.Nested(BrokenLinkSchema, required=True, allow_none=True)
    deprovisioning_records = fields.Nested(RecordsCheckSchema, required=True, allow_none=True,
                                           metadata={"description": "Those of this stretch; "
                                                     "null when a broken link stopped it."})


@api_route(bp, "/audit/verify", methods=["GET"], permission="audit:read", tags=["audit"],
           summary="Verify an organization's audit chain", query=VerifyArgs,
           response=VerifySchema)
def verify_audit(ctx: ApiContext) -> dict[str, Any]:
    """Recompute the hash chain of one organization (a stretch of at most ``limit`` records
    after ``after_seq``) and name the first changed, removed or reordered record."""
    args = ctx.args
    organization_id = ctx.org_filter(args.get("organization"))
    if organization_id is None:
        raise InvalidInput("give organization: each organization has its own chain",
                           field="organization")
    chain = chain_for(organization_id)
    head_seq = ctx.session.scalar(select(AuditChainHead.seq)
                                  .where(AuditChainHead.chain == chain)) or 0
    if args["after_seq"] > head_seq:
        raise InvalidInput(f"after_seq {args['after_seq']} is beyond the chain's head (seq "
                           f"{head_seq})", field="after_seq")
    since = _window_start(ctx, organization_id, args["after_seq"], args.get("after_time"))
    page = verify_chain_page(ctx.session, chain, args["after_seq"], args["limit"])
    broken: dict[str, Any] | None = None
    if page.problem is not None:
        broken = {"seq": page.bad_seq, "event_id": page.bad_event_id,
                  "reason": page.problem}
    key = deployment_key()
    keys = verification_keys(key, current_app.extensions[FORMER_KEYS])
    if broken is None:
        problem = verify_checkpoints(ctx.session, keys, chain, page.after_seq,
                                     None if page.complete else page.last_seq)
        if problem is not None:
            broken = {"seq": None, "event_id": None, "reason": problem}
    records, until = None, None
    if page.problem is None:
        stretch = verify_records_stretch(ctx.session, organization_id, page.after_seq,
                                         page.last_seq, page.complete, since)
        report, until = stretch.report, stretch.until
        records = {"checked": report.records, "sealed": report.sealed,
                   "problem_count": len(report.problems),
                   "problems": [{"record_id": p.record_id, "event_id": p.event_id,
                                 "reason": p.problem} for p in report.problems[:MAX_PROBLEMS]]}
    return {"ok": broken is None and not (records and records["problem_count"]),
            "organization_id": organization_id, "chain": chain,
            "complete": page.complete or broken is not None,
            "events_checked": page.records, "after_seq": page.after_seq,
            "last_seq": page.last_seq, "head_seq": page.head_seq,
            "next_after_seq": page.next_after_seq if broken is None else None,
            "next_after_time": until if broken is None and not page.complete else None,
            "key_id": key.key_id,
            "former_key_ids": sorted(k for k in keys if k != key.key_id), "broken": broken,
            "deprovisioning_records": records}


def _window_start(ctx: ApiContext, organization_id: str, after_seq: int,
                  given: datetime | None) -> datetime | None:
    """The ``since`` of the stretch's records window: ``after_time`` as the previous
    answer gave it (checked to fit ``after_seq``), else read from the chain."""
    if given is None:
        return window_start(ctx.session, organization_id, after_seq)
    if not after_seq or not plausible_window_start(ctx.session, organization_id, after_seq,
                                                   given):
        raise InvalidInput("after_time is not the next_after_time of the answer whose "
                           "next_after_seq is after_seq: give both from the same answer, "
                           "or leave after_time out", field="after_time")
    return given
