"""Operator deprovisioning and reactivation of one user (issue 7, trigger ``operator``).

The same domain functions as SCIM and `roster lifecycle deprovision|reactivate`; the API
key is the actor, and the request's arrival time starts the record's latency.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import g
from marshmallow import Schema, fields, pre_load, validate
from sqlalchemy import select

from app.api.frame import ApiContext, api_route
from app.api.routes.deprovisions import DeprovisionRecordSchema
from app.api.schemas import FreeText, StrictSchema
from app.api.views import bp
from app.audit import Actor
from app.errors import Conflict, NotFound
from app.lifecycle import Trigger, deprovision_user, reactivate_user
from app.lifecycle.restore import hold_directory_for_reactivation
from app.mapping.locks import share_mapping
from app.models import User
from app.models.lifecycle import DeprovisionRecord


class LifecycleActionSchema(StrictSchema):
    """Optional words for the audit log: why the operator acts."""

    reason = fields.String(validate=[validate.Length(
        min=1, max=500, error="must be 1 to 500 characters, not blank"), FreeText()], metadata={
        "description": "Recorded in the audit event (user:deprovision / user:reactivate) "
                       "and on the deprovisioning record; trimmed, 1-500 characters, one "
                       "line: no control characters."})

    @pre_load
    def _trimmed(self, data: Any, **_: Any) -> Any:
        """The reason trimmed, as `roster lifecycle --reason` reads it: whitespace only
        was signed into the record and its receipt as it came."""
        if isinstance(data, dict) and isinstance(data.get("reason"), str):
            return {**data, "reason": data["reason"].strip()}
        return data


class ReactivationSchema(Schema):
    """The user after reactivation and what came back."""

    user_id = fields.String(required=True)
    status = fields.String(required=True)
    active = fields.Boolean(required=True)
    record_id = fields.String(allow_none=True, metadata={
        "description": "The deprovisioning record this reactivation undid, if any."})
    manual_grants_restored = fields.List(fields.String(), required=True, metadata={
        "description": "Role keys of manual grants given back; the mapping decides the rest."})


def _user(ctx: ApiContext, user_id: str, *, reactivates: bool = False) -> User:
    """The user, locked for the change; another organization's user is a plain 404.

    ``reactivates``: the change may leave the user active and re-evaluates its grants, so
    the user's directory is held active (409 when disabled) and then the organization's
    mapping lock is taken, both before the row lock: the lock order of
    app/mapping/reevaluation.py (directory row -> mapping lock -> users).
    """
    if reactivates:
        found = ctx.session.execute(select(User.organization_id, User.directory_id)
                                    .where(User.id == user_id)).first()
        if found is not None and ctx.scope_org_id in (None, found.organization_id):
            hold_directory_for_reactivation(ctx.session, found.directory_id)
            share_mapping(ctx.session, found.organization_id)
    user = ctx.session.scalars(select(User).where(User.id == user_id)
                               .with_for_update(key_share=True)).first()
    if user is None or ctx.scope_org_id not in (None, user.organization_id):
        raise NotFound(f"user {user_id!r} does not exist")
    return user


def _actor(ctx: ApiContext) -> Actor:
    return dataclasses.replace(ctx.actor, received_at=g.get("received_at"))


@api_route(bp, "/users/<user_id>/deprovision", methods=["POST"],
           permission="deprovisioning:write", tags=["deprovisioning"],
           summary="Deprovision a user now (sessions, tokens and grants revoked)",
           body=LifecycleActionSchema, response=DeprovisionRecordSchema, status=201)
def deprovision(ctx: ApiContext, user_id: str) -> DeprovisionRecord:
    """Take the user out everywhere at once, with trigger `operator`; 409 when already out.

    The answer is the deprovisioning record; its `revocation_committed_at` and `latency_ms`
    are stamped right after the commit: read them with GET /deprovisions/{id}. Its
    `batch_id` stays null: an operator's deprovisioning is deliberate, outside the
    mass-event guard, so no batch restore undoes it.
    """
    user = _user(ctx, user_id)
    rec = deprovision_user(ctx.session, user, _actor(ctx), trigger=Trigger.operator,
                           reason=ctx.body.get("reason"))
    if rec is None:
        raise Conflict(f"user {user_id!r} is already deprovisioned")
    return rec


@api_route(bp, "/users/<user_id>/reactivate", methods=["POST"],
           permission="deprovisioning:write", tags=["deprovisioning"],
           summary="Reactivate a deprovisioned user under the current mapping",
           body=LifecycleActionSchema, response=ReactivationSchema)
def reactivate(ctx: ApiContext, user_id: str) -> dict[str, Any]:
    """Same id; manual grants from the record come back, the current mapping decides the
    rest; a soft-deleted user reappears in SCIM. 409 when the user is active, or when its
    directory is disabled (enable the directory first: nothing is written)."""
    user = _user(ctx, user_id, reactivates=True)
    restored = reactivate_user(ctx.session, user, _actor(ctx), reason=ctx.body.get("reason"))
    if restored is None:
        raise Conflict(f"user {user_id!r} is active")
    return {"user_id": user.id, "status": user.status.value, "active": user.active, **restored}
