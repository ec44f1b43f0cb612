"""A user's effective access for the portal: grants, permissions, parameters, why, approvers."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from app.api.frame import ApiContext, api_route
from app.api.views import bp
from app.errors import NotFound
from app.mapping.access import effective_access
from app.models import User


class AccessSchema(Schema):
    """Effective access: each grant with unit path, permissions, parameters and reason."""

    user = fields.Dict(required=True, metadata={
        "description": "{user_id, user_name, display_name, status}"})
    grants = fields.List(fields.Dict(), required=True, metadata={
        "description": "{grant_id, role, role_name, unit {id, path}, permissions, parameters, "
                       "source, why {kind: rule|default|manual, rule, priority, matched "
                       "[{group, group_id, by, pattern} | {attribute, value}], also_matched, "
                       "since}}"})
    approvers = fields.Dict(required=True, metadata={
        "description": "{managers: SCIM manager chain upward, approvers: holders of an "
                       "approving role in the user's units or above, nearest first}"})


@api_route(bp, "/users/<user_id>/access", methods=["GET"], permission="access:read",
           tags=["access"], summary="A user's effective access and approver chain",
           response=AccessSchema)
def get_access(ctx: ApiContext, user_id: str) -> dict[str, Any]:
    """What the user may do, where, why, and who approves their orders."""
    user = ctx.session.get(User, user_id)
    missing = NotFound(f"user {user_id!r} does not exist")
    if user is None or user.deleted_at is not None:
        raise missing
    ctx.check_org(user.organization_id, missing)
    return effective_access(ctx.session, user)
