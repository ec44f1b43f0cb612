"""/Users endpoints (RFC 7644 §3.3-§3.6): one transaction and few queries per request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import Response
from sqlalchemy import Row

from app.db import Reader
from app.directory import groups as group_service
from app.directory import users as user_service
from app.directory.versions import Moved, shown_of, shown_users, user_part
from app.models import User
from app.scim.etag import (
    check_create_preconditions,
    check_preconditions,
    last_modified,
    version_of,
)
from app.scim.http import (
    actor_of,
    base_url,
    before_write,
    body,
    no_content,
    query_projection,
    read_response,
    read_unit,
    request_notes,
    resource_response,
    scim_settings,
    unit_of_work,
)
from app.scim.patch import apply_patch
from app.scim.projection import Projection
from app.scim.schema import CORE_USER, ROSTER_USER
from app.scim.users import USER_ALWAYS, user_from_scim, user_to_scim
from app.scim.values import normalise_resource

# The state a PATCH applies to: groups and the access extension are readOnly (dropped by
# normalise_resource anyway), so they are not even queried.
PATCH_STATE = Projection(CORE_USER, USER_ALWAYS, frozenset(), frozenset({
    (CORE_USER.lower(), "groups", None), (ROSTER_USER.lower(), None, None)}))


def render_users(session: Reader, users: Sequence[User | Row[Any]], projection: Projection,
                 *, new: bool = False, stored: bool = False,
                 attached: bool = False) -> list[dict[str, Any]]:
    """Users as resources; groups, grants and manager names in one batched query each.

    ``users`` are ORM objects or Core rows of the users table (list pages load those,
    which is cheaper). ``new`` users are in no group and hold no grant (``Created.bare``),
    so neither is queried. A deleted manager, and a manager reference naming no user yet,
    are left out, unless ``stored`` asks for the state as stored (the state a PATCH applies
    to, which must keep them). ``attached``: the rows carry their groups and grants
    (``user_service.ATTACHED``, selected when ``wants_attached``).
    """
    return [resource for resource, _version in _render(session, users, projection, new=new,
                                                       stored=stored, attached=attached)]


def wants_attached(projection: Projection) -> bool:
    """Whether a page of users rendered in ``projection`` selects ``ATTACHED``: when it
    shows both groups and the access extension (one query fewer; otherwise the one or the
    other is read alone, or neither)."""
    return projection.wants(CORE_USER, "groups") and projection.wants(ROSTER_USER, "grants")


def _render(session: Reader, users: Sequence[User | Row[Any]], projection: Projection, *,
            new: bool = False, stored: bool = False, attached: bool = False,
            moved: Moved | None = None) -> list[tuple[dict[str, Any], str]]:
    """``render_users``, each with its version (app/scim/etag.py): its own, and its
    manager's part, read with the manager's display in one query for the page.

    ``moved``: the manager's part as the caller read it already (one user), before the
    display: a manager's delete committing between the two then shows an older version
    with the newer ``manager`` (a client refetches once), never the reverse."""
    ids = [u.id for u in users]
    want_groups = bool(ids) and not new and projection.wants(CORE_USER, "groups")
    want_access = bool(ids) and not new and projection.wants(ROSTER_USER, "grants")
    if attached and want_groups and want_access:
        groups, access = user_service.attached_groups_and_access(users)
    elif want_groups and want_access:
        groups, access = user_service.groups_and_access(session, ids)
    else:
        groups = group_service.groups_of_users(session, ids) if want_groups else {}
        access = user_service.access_of_users(session, ids) if want_access else {}
    managers = shown_users(session, [u.manager_id for u in users])
    root = base_url()
    out = []
    for u in users:
        manager = managers.get(u.manager_id) if u.manager_id else None
        part = user_part(u, moved if moved is not None
                         else manager.moved if manager is not None else None)
        version = version_of(u.version, part)
        out.append((user_to_scim(
            u, base_url=root, projection=projection, groups=groups.get(u.id),
            grants=access.get(u.id), manager_name=manager.display if manager else None,
            manager_gone=not stored and bool(u.manager_id)
            and (manager is None or manager.display is None),
            manager_pending=u.manager_ref if stored else None, version=version,
            modified=last_modified(u.updated_at, part)), version))
    return out


def _one(session: Reader, user: User | Row[Any], projection: Projection | None = None, *,
         new: bool = False, stored: bool = False,
         moved: Moved | None = None) -> tuple[dict[str, Any], str]:
    projection = projection or query_projection(CORE_USER, USER_ALWAYS)
    return _render(session, [user], projection, new=new, stored=stored, moved=moved)[0]


def _manager_part(session: Reader, user: User | Row[Any]) -> Moved | None:
    """The user's manager's part of its version: one lookup by key, none without one."""
    return shown_of(session, user.manager_id) if user.manager_id else None


def _version(session: Reader, user: User | Row[Any]) -> str:
    """The user's version now (a write's precondition): its own, and the part its manager
    and its groups moved (app/directory/versions.py)."""
    return version_of(user.version, user_part(user, _manager_part(session, user)))


def get_user(user_id: str) -> Response:
    """GET /Users/{id} (RFC 7644 §3.4.1); If-None-Match with the current version is 304."""
    with read_unit() as (connection, caller):
        user = user_service.user_row(connection, caller.directory.id, user_id)
        part = _manager_part(connection, user)
        return read_response(version_of(user.version, user_part(user, part)),
                             lambda: _one(connection, user, moved=part)[0])


def create_user() -> Response:
    """POST /Users (RFC 7644 §3.3): 201 with Location; a taken userName is 409 uniqueness."""
    data = before_write(lambda: user_from_scim(normalise_resource(body(), "User",
                                                                  notes=request_notes())))
    with unit_of_work() as (session, caller):
        check_create_preconditions()
        created = user_service.add_user(
            session, caller.directory, data, actor_of(caller),
            store_password_hash=scim_settings()["store_password_hash"])
        # A restored user (Entra's re-create) is back in its groups and grants; a new one is
        # in no group, and holds only the grants its first evaluation gave it.
        user = created.user
        resource, version = _one(session, user, new=created.bare)
    return resource_response(resource, version, 201,
                             location=f"{base_url()}/Users/{user.id}")


def replace_user(user_id: str) -> Response:
    """PUT /Users/{id} (RFC 7644 §3.5.1); an omitted ``active`` keeps the user's state."""
    data = before_write(lambda: user_from_scim(normalise_resource(body(), "User",
                                                                  notes=request_notes())))
    with unit_of_work() as (session, caller):
        user = user_service.get_user(session, caller.directory.id, user_id, for_update=True)
        check_preconditions(_version(session, user))
        user_service.replace_user(session, user, data, actor_of(caller),
                                  store_password_hash=scim_settings()["store_password_hash"])
        resource, version = _one(session, user)
    return resource_response(resource, version)


def delete_user(user_id: str) -> Response:
    """DELETE /Users/{id} (RFC 7644 §3.6): 204; the user is gone from SCIM at once."""
    with unit_of_work() as (session, caller):
        user = user_service.get_user(session, caller.directory.id, user_id, for_update=True)
        check_preconditions(_version(session, user))
        user_service.remove_user(session, user, actor_of(caller))
    return no_content()



def patch_user(user_id: str) -> Response:
    """PATCH /Users/{id} (RFC 7644 §3.5.2): all operations apply, or none (one transaction)."""
    notes = request_notes()
    payload = before_write(body)
    with unit_of_work() as (session, caller):
        user = user_service.get_user(session, caller.directory.id, user_id, for_update=True)
        check_preconditions(_version(session, user))
        current, _ = _one(session, user, PATCH_STATE, stored=True)
        result = apply_patch(current, payload, resource_type="User", notes=notes)
        if result.touched:
            data = user_from_scim(normalise_resource(result.resource, "User", notes=notes))
            user_service.replace_user(
                session, user, data, actor_of(caller),
                store_password_hash=scim_settings()["store_password_hash"])
        resource, version = _one(session, user)
    return resource_response(resource, version)
