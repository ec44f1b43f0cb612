"""/Groups endpoints (RFC 7644 §3.3-§3.6); members are loaded only when returned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response
from sqlalchemy.orm import Session

from app.directory import groups as group_service
from app.models import Group
from app.scim.errors import ScimError
from app.scim.etag import check_if_match, not_modified, with_etag
from app.scim.groups import GROUP_ALWAYS, group_from_scim, group_to_scim
from app.scim.http import (
    actor_of,
    base_url,
    body,
    no_content,
    query_projection,
    resource_response,
    unit_of_work,
)
from app.scim.projection import Projection
from app.scim.schema import CORE_GROUP
from app.scim.values import normalise_resource


def render_groups(session: Session, groups: Sequence[Group],
                  projection: Projection) -> list[dict[str, Any]]:
    """Groups as resources; members in one batched query, none at all when excluded."""
    members = (group_service.member_rows(session, [g.id for g in groups])
               if groups and projection.wants(CORE_GROUP, "members") else {})
    root = base_url()
    return [group_to_scim(g, base_url=root, projection=projection, members=members.get(g.id))
            for g in groups]


def _one(session: Session, group: Group) -> dict[str, Any]:
    return render_groups(session, [group], query_projection(CORE_GROUP, GROUP_ALWAYS))[0]


def get_group(group_id: str) -> Response:
    """GET /Groups/{id} (RFC 7644 §3.4.1); If-None-Match with the current version is 304."""
    with unit_of_work(readonly=True) as (session, caller):
        group = group_service.get_group(session, caller.directory.id, group_id)
        if not_modified(group.version):
            return with_etag(Response(status=304), group.version)
        return resource_response(_one(session, group), group.version)


def create_group() -> Response:
    """POST /Groups (RFC 7644 §3.3): 201 with Location; members must be users here."""
    data = group_from_scim(normalise_resource(body(), "Group", notes=[]))
    with unit_of_work() as (session, caller):
        group = group_service.create_group(session, caller.directory, data, actor_of(caller))
        return resource_response(_one(session, group), group.version, 201,
                                 location=f"{base_url()}/Groups/{group.id}")


def replace_group(group_id: str) -> Response:
    """PUT /Groups/{id} (RFC 7644 §3.5.1): members become exactly the list sent."""
    data = group_from_scim(normalise_resource(body(), "Group", notes=[]))
    with unit_of_work() as (session, caller):
        group = group_service.get_group(session, caller.directory.id, group_id,
                                        for_update=True)
        check_if_match(group.version)
        group_service.update_group(session, group, data, actor_of(caller))
        return resource_response(_one(session, group), group.version)


def delete_group(group_id: str) -> Response:
    """DELETE /Groups/{id} (RFC 7644 §3.6): 204."""
    with unit_of_work() as (session, caller):
        group = group_service.get_group(session, caller.directory.id, group_id,
                                        for_update=True)
        check_if_match(group.version)
        group_service.delete_group(session, group, actor_of(caller))
    return no_content()


def patch_group(group_id: str) -> Response:
    """PATCH (RFC 7644 §3.5.2): not wired yet, so answered 501 and advertised unsupported."""
    with unit_of_work(readonly=True):
        pass
    raise ScimError(501, "PATCH is not implemented yet")
