"""The /scim/v2 blueprint: routing, SCIM errors and media type, discovery, /Me.

Every path under /scim/v2 answers in SCIM format: unknown paths are a SCIM 404 and a
method a path does not support is a SCIM 405 with ``Allow`` (RFC 7644 §3.12).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from app.bearer import presented_bearer
from app.db_errors import (
    describe_transient,
    is_transient,
    prepared_statement_lost,
    transient_detail,
)
from app.errors import Conflict, DomainError, InvalidInput, NotFound, PreconditionFailed
from app.mapping.locks import retry_after
from app.migrate import NOT_READY_DETAIL, NOT_READY_RETRY_AFTER, schema_not_ready
from app.scim import bulk, discovery, group_views, list_views, user_views
from app.scim.client_limit import count_oauth_client
from app.scim.errors import SCIM_MEDIA_TYPE, ScimError, error_response, scim_response
from app.scim.etag import untagged_not_modified
from app.scim.http import authenticated, base_url, scim_settings
from app.scim.request import response_media_type
from app.scim.schema import SCHEMAS

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
Handler = Callable[..., Response]
PATCH_SUPPORTED = True


def allowed_methods(handlers: dict[str, Handler]) -> str:
    """The ``Allow`` of an endpoint: its methods, and HEAD beside a GET, which it serves too
    (RFC 9110 §9.3.2, §10.2.1: a 405 lists every method the resource supports)."""
    methods = list(handlers)
    if "GET" in methods and "HEAD" not in methods:
        methods.insert(methods.index("GET") + 1, "HEAD")
    return ", ".join(methods)


def _route(rule: str, endpoint: str, handlers: dict[str, Handler]) -> None:
    """Register ``rule`` for every method; unsupported ones get a SCIM 405."""
    allowed = allowed_methods(handlers)

    def view(**kwargs: Any) -> Response:
        handler = handlers.get(request.method)
        if handler is None and request.method == "HEAD":
            handler = handlers.get("GET")
        if handler is None:
            _check_presented_token()
            response = error_response(405, f"{request.method} is not supported on this "
                                           f"endpoint; allowed: {allowed}")
            response.headers["Allow"] = allowed
            return response
        if any("\x00" in value for value in kwargs.values()):
            # No id holds NUL, and PostgreSQL cannot even compare one: 404 after the token.
            authenticated()
            raise ScimError(404, "no resource has an id with a NUL character in it")
        return handler(**kwargs)
    view.__name__ = endpoint
    bp.add_url_rule(rule, endpoint, view, methods=ALL_METHODS, provide_automatic_options=False)


def service_provider_config() -> Response:
    """RFC 7644 §4: what this server supports, truthfully."""
    _discovery_query()
    return _discovery_answer(discovery.service_provider_config(
        base_url(), scim_settings(), patch=PATCH_SUPPORTED, filtering=True, sort=True,
        bulk_max_operations=bulk.max_operations()))


def _discovery_query() -> None:
    """Authenticate; a filter on a discovery endpoint is 403 (RFC 7644 §4: "to ensure that
    clients cannot incorrectly assume that any matching conditions specified in a filter
    are true"). The other query parameters "SHALL be ignored"."""
    authenticated()
    if any(name.lower() == "filter" for name in request.args):
        raise ScimError(403, "discovery endpoints take no filter (RFC 7644 §4): every "
                             "item is returned, so a filter would not hold")


def _discovery_answer(body: dict[str, Any]) -> Response:
    """A discovery document, under the preconditions of a resource without an entity tag
    (RFC 9110 §13.1): ``If-Match`` with tags is 412, ``If-None-Match: *`` 304."""
    if untagged_not_modified(safe=True):
        return Response(status=304, mimetype=SCIM_MEDIA_TYPE)
    return scim_response(body)


def resource_types() -> Response:
    """RFC 7644 §4: /ResourceTypes as a ListResponse."""
    _discovery_query()
    return _discovery_answer(discovery.list_response(discovery.resource_types(base_url())))


def resource_type(name: str) -> Response:
    """RFC 7644 §4: one ResourceType by id."""
    _discovery_query()
    found = [r for r in discovery.resource_types(base_url()) if r["id"] == name]
    if not found:
        raise ScimError(404, f"ResourceType {name} not found")
    return _discovery_answer(found[0])


def schemas() -> Response:
    """RFC 7644 §4: /Schemas as a ListResponse."""
    _discovery_query()
    return _discovery_answer(discovery.list_response(discovery.schemas(base_url())))


def schema(urn: str) -> Response:
    """RFC 7644 §4: one Schema by its URN (case-insensitive)."""
    _discovery_query()
    found = next((s for s in SCHEMAS.values() if s.id.lower() == urn.lower()), None)
    if found is None:
        raise ScimError(404, f"Schema {urn} not found")
    return _discovery_answer(found.to_scim(base_url()))


def me(**_: Any) -> Response:
    """RFC 7644 §3.11: the caller is a directory, not a user, so /Me is not implemented (501)."""
    authenticated()
    raise ScimError(501, "/Me is not supported: the caller is a provisioning directory, "
                         "not a user")


def unknown(path: str = "") -> Response:
    """Anything else under /scim/v2 is a SCIM 404 (RFC 7644 §3.12), after the token if one
    was sent."""
    _check_presented_token()
    raise ScimError(404, f"no SCIM endpoint at /scim/v2/{path}")


def _check_presented_token() -> None:
    """A bearer token sent where no view will check it (an unknown path, a method the
    endpoint does not serve) is checked all the same: a refused one is the usual 401, and
    counts as a failed authentication of the address (app/api/authlimit.py). Answered
    404/405 unchecked, made-up tokens were never limited there, each writing a rate-limit
    counter of its own. Without a token the answer stays the path's own."""
    if presented_bearer() is not None:
        authenticated()


_route("/ServiceProviderConfig", "service_provider_config", {"GET": service_provider_config})
_route("/ResourceTypes", "resource_types", {"GET": resource_types})
_route("/ResourceTypes/<name>", "resource_type", {"GET": resource_type})
_route("/Schemas", "schemas", {"GET": schemas})
_route("/Schemas/<path:urn>", "schema", {"GET": schema})
_route("/Me", "me", dict.fromkeys(ALL_METHODS, me))
_route("/Me/<path:rest>", "me_sub", dict.fromkeys(ALL_METHODS, me))
_route("/Users", "users", {"GET": list_views.list_users, "POST": user_views.create_user})
_route("/Users/.search", "users_search", {"POST": list_views.search_users})
_route("/Users/<user_id>", "user", {
    "GET": user_views.get_user, "PUT": user_views.replace_user,
    "PATCH": user_views.patch_user, "DELETE": user_views.delete_user})
_route("/Groups", "groups", {"GET": list_views.list_groups, "POST": group_views.create_group})
_route("/Groups/.search", "groups_search", {"POST": list_views.search_groups})
_route("/Groups/<group_id>", "group", {
    "GET": group_views.get_group, "PUT": group_views.replace_group,
    "PATCH": group_views.patch_group, "DELETE": group_views.delete_group})
_route("/.search", "root_search", {"POST": list_views.search_root})
_route("/Bulk", "bulk", {"POST": bulk.bulk})  # RFC 7644 §3.7 (issue 5)
# strict_slashes off: /scim/v2 itself (the base URL, as printed) is a SCIM 404 as well, not
# Flask's HTML redirect to /scim/v2/.
bp.add_url_rule("/", "unknown_root", unknown, methods=ALL_METHODS,
                provide_automatic_options=False, strict_slashes=False)
bp.add_url_rule("/<path:path>", "unknown", unknown, methods=ALL_METHODS,
                provide_automatic_options=False)


# After the app's per-credential limit (which leaves OAuth access tokens to this one).
bp.before_request(count_oauth_client)


@bp.after_request
def _negotiate(response: Response) -> Response:
    """Answer application/json to a client that prefers it (RFC 7644 §3.8): the same body.
    Only an Accept naming application/json, or weighing the SCIM type below a wildcard,
    can prefer it; any other (most IdPs') is not parsed at all."""
    accept = (request.headers.get("Accept") or "").lower()
    if ("application/json" in accept or "q=" in accept) \
            and response.mimetype == SCIM_MEDIA_TYPE:
        response.mimetype = response_media_type(request.accept_mimetypes)
    return response


_STATUS_BY_ERROR: dict[type[DomainError], tuple[int, str | None]] = {
    NotFound: (404, None),
    Conflict: (409, "uniqueness"),
    InvalidInput: (400, "invalidValue"),
    PreconditionFailed: (412, None),
}


@bp.errorhandler(ScimError)
def _scim_error(exc: ScimError) -> Response:
    return error_response(exc.status, exc.detail, exc.scim_type, bearer_error=exc.bearer_error)


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> Response:
    status, scim_type = _STATUS_BY_ERROR.get(type(exc), (400, None))
    return error_response(status, exc.detail, scim_type)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return error_response(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(DataError)
def _data_error(exc: DataError) -> Response:
    # A value the database refused although Roster's own checks let it through (a column
    # an operator narrowed, a limit of the server): the transaction rolled back, so this is
    # bad input for this database: a 400 with the database's reason, not a 500.
    reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "refused by the database"
    # The reason may quote the value: the caller's own, fine to answer, not to log.
    log.warning("SCIM request held a value the database refused (%s)", type(exc.orig).__name__)
    return error_response(400, f"A value cannot be stored: {reason}", "invalidValue")


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    if is_transient(exc):
        # A lock timeout or lost connection: nothing was committed, so a retry is safe.
        # Okta and Entra both retry on 503 with Retry-After.
        log.warning("SCIM request hit a transient database error: %s", describe_transient(exc))
        response = error_response(503, transient_detail(exc))
        response.headers["Retry-After"] = retry_after(
            current_app.extensions["roster.db"].engine, exc)
        return response
    if schema_not_ready(current_app.extensions["roster.db"].engine, exc):
        response = error_response(503, NOT_READY_DETAIL)
        response.headers["Retry-After"] = NOT_READY_RETRY_AFTER
        return response
    prepared_statement_lost(exc)  # logs what to do about a pooler, if that is the cause
    log.exception("unhandled SCIM error")
    return error_response(500, f"internal error; quote request id {g.get('request_id')}")
