"""/Groups endpoints (RFC 7644 §3.3-§3.6); members are loaded only when returned."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response
from sqlalchemy import Row

from app.db import Reader
from app.directory import groups as group_service
from app.directory.users import display_names
from app.directory.versions import NEVER, Moved, member_versions
from app.models import Group
from app.scim.etag import (
    check_create_preconditions,
    check_preconditions,
    last_modified,
    version_of,
    with_etag,
)
from app.scim.groups import GROUP_ALWAYS, group_from_scim, group_to_scim
from app.scim.http import (
    actor_of,
    base_url,
    before_write,
    body,
    no_content,
    query_args,
    query_projection,
    read_response,
    read_unit,
    request_notes,
    resource_response,
    unit_of_work,
)
from app.scim.patch import apply_patch
from app.scim.projection import Projection
from app.scim.schema import CORE_GROUP
from app.scim.values import normalise_resource

NO_MEMBERS = Projection(CORE_GROUP, GROUP_ALWAYS, frozenset(),
                        frozenset({(CORE_GROUP.lower(), "members", None)}))


def render_groups(session: Reader, groups: Sequence[Group | Row[Any]],
                  projection: Projection, *, moved: dict[str, Moved] | None = None,
                  known: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    """Groups as resources; members in one batched query, none at all when excluded, and
    their versions' members' part in one more (by key: no member is read for it).

    ``known``: the members of each group, when the caller has them (a PUT read them).
    ``moved``: that part, when the caller read it already. It is read before the members,
    so a member's delete committing between the two shows an older version with the newer
    members (a client refetches once), never the newer version with the older members.
    """
    ids = [g.id for g in groups]
    if moved is None:
        moved = member_versions(session, ids)
    if not (groups and projection.wants(CORE_GROUP, "members")):
        members: dict[str, list[str]] = {}
    else:
        members = known if known is not None else group_service.member_ids_of(session, ids)
    names = (display_names(session, (m for ids in members.values() for m in ids))
             if members and projection.requests(CORE_GROUP, "members", "display") else None)
    root = base_url()
    return [group_to_scim(g, base_url=root, projection=projection, members=members.get(g.id),
                          names=names, version=version_of(g.version, moved.get(g.id)),
                          modified=last_modified(g.updated_at, moved.get(g.id)))
            for g in groups]


def _one(session: Reader, group: Group | Row[Any], moved: Moved | None = None,
         projection: Projection | None = None,
         members: list[str] | None = None) -> dict[str, Any]:
    return render_groups(session, [group],
                         projection or query_projection(CORE_GROUP, GROUP_ALWAYS),
                         moved={group.id: moved} if moved is not None else None,
                         known={group.id: members} if members is not None else None)[0]


def _moved(session: Reader, group: Group | Row[Any]) -> Moved:
    """The group's members' part (app/directory/versions.py): one lookup by key."""
    return member_versions(session, [group.id]).get(group.id, NEVER)


def get_group(group_id: str) -> Response:
    """GET /Groups/{id} (RFC 7644 §3.4.1); If-None-Match with the current version is 304."""
    with read_unit() as (connection, caller):
        group = group_service.group_row(connection, caller.directory.id, group_id)
        moved = _moved(connection, group)
        return read_response(version_of(group.version, moved),
                             lambda: _one(connection, group, moved))


def create_group() -> Response:
    """POST /Groups (RFC 7644 §3.3): 201 with Location; members must be users here."""
    data = before_write(lambda: group_from_scim(normalise_resource(body(), "Group",
                                                                    notes=request_notes())))
    with unit_of_work() as (session, caller):
        check_create_preconditions()
        group = group_service.create_group(session, caller.directory, data, actor_of(caller))
        resource = _one(session, group, NEVER)
    return resource_response(resource, str(group.version), 201,
                             location=f"{base_url()}/Groups/{group.id}")


def replace_group(group_id: str) -> Response:
    """PUT /Groups/{id} (RFC 7644 §3.5.1): members become exactly the list sent."""
    data = before_write(lambda: group_from_scim(normalise_resource(body(), "Group",
                                                                    notes=request_notes())))
    with unit_of_work() as (session, caller):
        group = group_service.get_group(session, caller.directory.id, group_id,
                                        for_update=True)
        moved = _moved(session, group)
        check_preconditions(version_of(group.version, moved))
        # The members as the PUT read and wrote them: never read a second time.
        members = group_service.update_group(session, group, data, actor_of(caller))
        resource = _one(session, group, moved, members=members)
    return resource_response(resource, version_of(group.version, moved))


def delete_group(group_id: str) -> Response:
    """DELETE /Groups/{id} (RFC 7644 §3.6): 204."""
    with unit_of_work() as (session, caller):
        group = group_service.get_group(session, caller.directory.id, group_id,
                                        for_update=True)
        check_preconditions(version_of(group.version, _moved(session, group)))
        group_service.delete_group(session, group, actor_of(caller))
    return no_content()


def patch_group(group_id: str) -> Response:
    """PATCH /Groups/{id} (RFC 7644 §3.5.2): atomic; 204 unless attributes are asked for.

    Returning the whole group after adding one member would read every member, so the
    204 the RFC allows is the default; ``attributes``/``excludedAttributes`` get a 200.
    """
    notes = request_notes()
    payload = before_write(body)
    with unit_of_work() as (session, caller):
        group = group_service.get_group(session, caller.directory.id, group_id,
                                        for_update=True)
        moved = _moved(session, group)
        check_preconditions(version_of(group.version, moved))
        current = _one(session, group, moved, NO_MEMBERS)
        result = apply_patch(current, payload, resource_type="Group", notes=notes)
        data = (group_from_scim(normalise_resource(result.resource, "Group", notes=notes))
                if result.touched - {"members"} else None)
        # One call: every user the operations touch is locked up front, in one order.
        group_service.edit_group(session, group, data, result.member_changes,
                                 actor_of(caller))
        args = query_args()
        version = version_of(group.version, moved)
        if args.get("attributes") or args.get("excludedAttributes"):
            return resource_response(_one(session, group, moved), version)
        return with_etag(no_content(), version)
