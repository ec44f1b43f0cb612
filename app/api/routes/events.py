"""The event pull feed and the webhook deliveries (portal and operators)."""

from __future__ import annotations

import base64
import json
from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy import select

from app.api.frame import ApiContext, api_route
from app.api.pagination import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    Page,
    decode_values,
    list_tag,
)
from app.api.schemas import PageArgs, QueryInteger, StrictSchema
from app.api.views import bp
from app.errors import InvalidInput
from app.events.feed import FeedPosition, events_after
from app.models import OutboxEvent
from app.models.lifecycle import WebhookDelivery


class EventSchema(Schema):
    """One event, as webhooks deliver it (``id`` is the idempotency key)."""

    id = fields.String(required=True)
    sequence = fields.Integer(required=True)
    type = fields.String(required=True)
    organization_id = fields.String(allow_none=True)
    aggregate_id = fields.String(allow_none=True)
    created_at = fields.String(required=True)
    data = fields.Dict(required=True)


class FeedSchema(Schema):
    """A page of the feed; pass next_cursor as ``after`` to continue (also when empty)."""

    items = fields.List(fields.Nested(EventSchema), required=True)
    next_cursor = fields.String(required=True)


class FeedArgs(StrictSchema):
    """Where to start and how many."""

    # A PostgreSQL cursor carries snapshots: longer than a list's (app/events/feed.py).
    after = fields.String(validate=validate.Length(min=1, max=4000), metadata={
        "description": "A next_cursor from an earlier page; omit to start at the oldest "
                       "event kept (events.retention_days). A cursor that stands before "
                       "purged events is answered 410 (type .../cursor-expired). A cursor "
                       "continues the feed it came from: the same type filter and the same "
                       "organization's key, else 400."})
    limit = QueryInteger(load_default=DEFAULT_LIMIT,
                           validate=validate.Range(min=1, max=MAX_LIMIT))
    type = fields.String(validate=validate.Length(min=1, max=100), metadata={
        "description": "Only events of this type (e.g. user.deprovisioned)."})


class DeliverySchema(Schema):
    """One event to one webhook endpoint."""

    id = fields.Integer(required=True)
    event_id = fields.String(required=True)
    endpoint = fields.String(required=True, metadata={
        "description": "The webhook URL with its credentials (userinfo, token-like query "
                       "values) masked as ***."})
    status = fields.String(required=True, metadata={"description": "pending|delivered|dead"})
    attempts = fields.Integer(required=True)
    created_at = fields.AwareDateTime(required=True)
    next_attempt_at = fields.AwareDateTime(required=True)
    last_status = fields.Integer(allow_none=True)
    last_error = fields.String(allow_none=True)
    delivered_at = fields.AwareDateTime(allow_none=True)


class DeliveryArgs(PageArgs):
    """Filter by status."""

    status = fields.String(validate=validate.OneOf(["pending", "delivered", "dead"]))


@api_route(bp, "/events", methods=["GET"], permission="events:read", tags=["events"],
           summary="Pull feed of events after a cursor", query=FeedArgs, response=FeedSchema,
           errors=(410,))
def feed(ctx: ApiContext) -> dict[str, Any]:
    """Events in commit-safe order of sequence; rebuild from any point with ``after``."""
    # No cursor: from the oldest event kept. A cursor behind what the retention purge
    # deleted is a 410 cursor_expired problem (app/events/feed.py says how to resync).
    types = [ctx.args["type"]] if "type" in ctx.args else None
    tag = list_tag("events", ctx.scope_org_id or "", *(types or []))
    position = _position(ctx.args["after"], tag) if "after" in ctx.args else None
    items, position = events_after(ctx.session, position, limit=ctx.args["limit"],
                                   organization_id=ctx.scope_org_id, types=types)
    return {"items": items, "next_cursor": _cursor(position, tag)}


def _cursor(position: FeedPosition, tag: str) -> str:
    """The opaque next_cursor: the position and the feed it belongs to (organization and
    type filter). On SQLite a page that lists all its filter matches moves past every event
    written so far, so a cursor read on with another filter or another organization's key
    skipped that feed's events: :func:`_position` refuses it instead."""
    raw = json.dumps({"feed": tag, "at": position.values()}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _position(cursor: str, tag: str) -> FeedPosition:
    """Inverse of :func:`_cursor`; a bare position (a cursor issued before cursors named
    their feed) is still taken. Another feed's cursor is a 400."""
    values = decode_values(cursor, field="after")
    if isinstance(values, dict):
        if set(values) != {"feed", "at"} or values["feed"] != tag:
            raise InvalidInput("cursor belongs to another feed: a cursor continues the feed "
                               "it came from, with the same type filter and the same "
                               "organization's key (read on with those, or start again "
                               "without 'after')", field="after")
        values = values["at"]
    return FeedPosition.from_values(values)


@api_route(bp, "/events/deliveries", methods=["GET"], permission="events:read",
           tags=["events"], summary="List webhook deliveries (dead letters with status=dead)",
           query=DeliveryArgs, response=DeliverySchema, paginated=True)
def list_deliveries(ctx: ApiContext) -> Page:
    """Deliveries in id order; org-bound keys see their organization's events only."""
    stmt = select(WebhookDelivery)
    if ctx.scope_org_id is not None:
        stmt = stmt.join(OutboxEvent, OutboxEvent.id == WebhookDelivery.outbox_id).where(
            OutboxEvent.organization_id == ctx.scope_org_id)
    if "status" in ctx.args:
        stmt = stmt.where(WebhookDelivery.status == ctx.args["status"])
    return ctx.paginate(stmt, (WebhookDelivery.id,))
