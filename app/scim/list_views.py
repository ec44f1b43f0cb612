"""List and .search endpoints (RFC 7644 §3.4.2, §3.4.3), on top of app.scim.listing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from flask import Response, current_app
from sqlalchemy import Connection

from app.directory.users import ATTACHED
from app.models import Group, User
from app.scim.auth import Caller
from app.scim.errors import (
    SCIM_MEDIA_TYPE,
    ScimError,
    message_members,
    require_message_schema,
    scim_response,
)
from app.scim.etag import untagged_not_modified
from app.scim.filter_syntax import Resource
from app.scim.group_views import render_groups
from app.scim.groups import GROUP_ALWAYS
from app.scim.http import PARAMETERS, body, query_args, read_unit, request_notes, scim_settings
from app.scim.listing import ListPage, ListParams, list_response, parse_list_params, run_list
from app.scim.projection import Projection
from app.scim.root_search import root_page
from app.scim.schema import CORE_GROUP, CORE_USER, LIST_RESPONSE, SEARCH_REQUEST
from app.scim.user_views import render_users, wants_attached
from app.scim.users import USER_ALWAYS

_MODELS: dict[str, type[User] | type[Group]] = {"User": User, "Group": Group}


def _params(source: Mapping[str, Any], *, from_body: bool,
            resource: Resource | None) -> ListParams:
    scim = scim_settings()
    return parse_list_params(source, from_body=from_body, default_count=scim["default_page_size"],
                             max_count=scim["max_page_size"], resource=resource)


def _cursor_key() -> bytes:
    return (current_app.config.get("SECRET_KEY") or "roster-scim-cursor").encode()


def _page(connection: Connection, caller: Caller, resource: Resource,
          params: ListParams, attached: bool) -> ListPage:
    model = _MODELS[resource]
    return run_list(connection, model, caller.directory.id, params, resource=resource,
                    dialect=connection.dialect.name,
                    max_results=scim_settings()["max_filter_results"], notes=request_notes(),
                    cursor_key=_cursor_key(), attach=ATTACHED if attached else ())


def _projection(resource: Resource, params: ListParams) -> Projection:
    if resource == "User":
        return Projection.parse(CORE_USER, USER_ALWAYS, list(params.attributes),
                                list(params.excluded_attributes))
    return Projection.parse(CORE_GROUP, GROUP_ALWAYS, list(params.attributes),
                            list(params.excluded_attributes))


def _render(connection: Connection, resource: Resource, rows: list[Any],
            projection: Projection, *, attached: bool = False) -> list[dict[str, Any]]:
    if resource == "User":
        return render_users(connection, rows, projection, attached=attached)
    return render_groups(connection, rows, projection)


def _list(resource: Resource, source: Callable[[], Mapping[str, Any]], *,
          from_body: bool) -> Response:
    # Authenticate before reading the body: a caller without a token learns nothing.
    # Lists read Core rows only, so they run without an ORM session (read_unit).
    with read_unit() as (connection, caller):
        params = _params(source(), from_body=from_body, resource=resource)
        # A page of users brings their groups and grants along when it shows both.
        projection = _projection(resource, params)
        attached = resource == "User" and wants_attached(projection)
        page = _page(connection, caller, resource, params, attached)
        # After the query: a request that fails without its preconditions (a bad filter,
        # tooMany) fails with them too (RFC 9110 §13.2.1).
        if untagged_not_modified(safe=not from_body):
            return Response(status=304, mimetype=SCIM_MEDIA_TYPE)
        return scim_response(list_response(page, _render(connection, resource,
                                                         page.resources, projection,
                                                         attached=attached)))


def _search_body() -> dict[str, Any]:
    """A SearchRequest (RFC 7644 §3.4.3); ``schemas``, when sent, must name it."""
    # Parameter names are case-insensitive like attribute names (RFC 7644 §3.4.3); one
    # given twice (filter and FILTER) is a 400, as it is in a query string.
    members = message_members(body())
    schemas = members.get("schemas")
    if schemas is not None:
        require_message_schema(schemas, SEARCH_REQUEST)
    return {PARAMETERS.get(k, k): v for k, v in members.items()}


def list_users() -> Response:
    """GET /Users with filter, sort, index or cursor paging (RFC 7644 §3.4.2, RFC 9865)."""
    return _list("User", query_args, from_body=False)


def list_groups() -> Response:
    """GET /Groups with filter, sort, index or cursor paging (RFC 7644 §3.4.2, RFC 9865)."""
    return _list("Group", query_args, from_body=False)


def search_users() -> Response:
    """POST /Users/.search (RFC 7644 §3.4.3)."""
    return _list("User", _search_body, from_body=True)


def search_groups() -> Response:
    """POST /Groups/.search (RFC 7644 §3.4.3)."""
    return _list("Group", _search_body, from_body=True)


def search_root() -> Response:
    """POST /.search over Users and Groups together (RFC 7644 §3.4.3): one order across
    both, index paging through it (``app.scim.root_search``)."""
    with read_unit() as (connection, caller):
        params = _params(_search_body(), from_body=True, resource=None)
        if params.cursor is not None:
            raise ScimError(400, "cursor paging is available per resource type "
                                 "(/Users/.search, /Groups/.search), not at the root",
                            "invalidValue")
        page, total = root_page(connection, caller.directory.id, params,
                                dialect=connection.dialect.name,
                                max_results=scim_settings()["max_filter_results"],
                                notes=request_notes())
        untagged_not_modified(safe=False)
        rendered = {resource: iter(_render(connection, resource,
                                           [row for kind, row in page if kind == resource],
                                           _projection(resource, params)))
                    for resource in ("User", "Group")}
        resources = [next(rendered[kind]) for kind, _row in page]
        return scim_response({"schemas": [LIST_RESPONSE], "totalResults": total,
                              "itemsPerPage": len(resources),
                              "startIndex": params.start_index_sent, "Resources": resources})
