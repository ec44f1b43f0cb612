"""Deprovisioning records and their signed receipts (auditors and admins: own org)."""

from __future__ import annotations

from typing import Any

from flask import current_app
from marshmallow import Schema, fields, validate

from app.api.frame import ApiContext, api_route
from app.api.pagination import Page
from app.api.schemas import TimeRangeArgs
from app.api.views import bp
from app.audit.receipts import get_record, make_receipt
from app.audit.record_feed import POSITION, records_by_position
from app.audit.signing import SigningKey, load_signing_key
from app.models.lifecycle import DeprovisionRecord
from app.settings import ROOT


class DeprovisionRecordSchema(Schema):
    """One deprovisioning: subject, cause, timestamps, states before and after, counts."""

    id = fields.String(required=True)
    event_id = fields.String(required=True, metadata={
        "description": "Id of the user.deprovisioned event."})
    organization_id = fields.String(required=True)
    user_id = fields.String(required=True)
    scim_id = fields.String(required=True)
    external_id = fields.String(allow_none=True)
    user_name = fields.String(required=True)
    directory_id = fields.String(allow_none=True)
    vendor = fields.String(allow_none=True)
    dialect = fields.String(allow_none=True)
    trigger = fields.String(required=True)
    reason = fields.String(allow_none=True, metadata={
        "description": "The operator's reason (CLI --reason, API body), if given."})
    actor_type = fields.String(required=True)
    actor_id = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    source_ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    received_at = fields.AwareDateTime(required=True)
    applied_at = fields.AwareDateTime(required=True)
    revocation_committed_at = fields.AwareDateTime(allow_none=True)
    latency_ms = fields.Float(allow_none=True, metadata={
        "description": "received_at to revocation_committed_at, in milliseconds."})
    state_before = fields.Dict(required=True)
    state_after = fields.Dict(required=True)
    sessions_revoked = fields.Integer(required=True)
    tokens_revoked = fields.Integer(required=True)
    grants_removed = fields.Integer(required=True)
    outcome = fields.String(required=True)
    error = fields.String(allow_none=True)
    batch_id = fields.String(allow_none=True, metadata={
        "description": "The mass-deprovisioning batch, set as the deprovisioning commits "
                       "(never for an operator's deprovisioning)."})
    restored_at = fields.AwareDateTime(allow_none=True)


class ReceiptSchema(Schema):
    """The record signed with the deployment's Ed25519 key (verify with the public key)."""

    receipt = fields.Dict(required=True)
    algorithm = fields.String(required=True)
    signature = fields.String(required=True, metadata={"description": "Base64 Ed25519."})
    public_key = fields.String(required=True, metadata={
        "description": "Informational; verify against the key you obtained out of band."})


class DeprovisionArgs(TimeRangeArgs):
    """Filters over received_at; org-bound keys always see only their own organization."""

    organization = fields.String(validate=validate.Length(min=1, max=100))
    trigger = fields.String(validate=validate.Length(min=1, max=40))
    user_id = fields.String(validate=validate.Length(min=1, max=36))
    outcome = fields.String(validate=validate.OneOf(["applied", "failed"]), metadata={
        "description": "failed: an attempt whose transaction rolled back (nothing revoked)."})


def deployment_key() -> SigningKey:
    """The signing key of this app, loaded once."""
    key: SigningKey | None = current_app.extensions.get("roster.signing_key")
    if key is None:
        key = load_signing_key(current_app.config["ROSTER"], ROOT)
        current_app.extensions["roster.signing_key"] = key
    return key


@api_route(bp, "/deprovisions", methods=["GET"], permission="deprovisioning:read",
           tags=["deprovisioning"], summary="List deprovisioning records",
           query=DeprovisionArgs, response=DeprovisionRecordSchema, paginated=True,
           errors=(503,))
def list_deprovisions(ctx: ApiContext) -> Page:
    """Deprovisionings in the order they committed (their audit events' order), so that a
    cursor never passes a record still to commit: one received earlier may commit later
    (app/audit/record_feed.py). Across organizations a page ends where no commit can still
    land before it (a 503 with Retry-After when one takes over 2 s)."""
    args: dict[str, Any] = ctx.args
    stmt = records_by_position(ctx.session, ctx.org_filter(args.get("organization")))
    if "since" in args:
        stmt = stmt.where(DeprovisionRecord.received_at >= args["since"])
    if "until" in args:
        stmt = stmt.where(DeprovisionRecord.received_at < args["until"])
    for name in ("trigger", "user_id", "outcome"):
        if name in args:
            stmt = stmt.where(getattr(DeprovisionRecord, name) == args[name])
    return ctx.paginate(stmt, (POSITION,), keyed=True)


@api_route(bp, "/deprovisions/<record_id>", methods=["GET"], permission="deprovisioning:read",
           tags=["deprovisioning"], summary="Get a deprovisioning record",
           response=DeprovisionRecordSchema)
def get_deprovision(ctx: ApiContext, record_id: str) -> DeprovisionRecord:
    """One record by id."""
    return get_record(ctx.session, record_id, ctx.scope_org_id)


@api_route(bp, "/deprovisions/<record_id>/receipt", methods=["GET"],
           permission="deprovisioning:read", tags=["deprovisioning"],
           summary="Get the signed receipt of a deprovisioning", response=ReceiptSchema,
           errors=(409,))
def get_receipt(ctx: ApiContext, record_id: str) -> dict[str, Any]:
    """Verify offline with `roster audit verify-receipt FILE --public-key KEY.pem`. A failed
    attempt (outcome `failed`: nothing was revoked) has no receipt: 409; nor has a record
    that fails its audit seal (changed or added in the database): 409."""
    return make_receipt(ctx.session, get_record(ctx.session, record_id, ctx.scope_org_id),
                        deployment_key())
