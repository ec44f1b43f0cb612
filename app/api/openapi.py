"""The OpenAPI 3.1 description of /api/v1, generated from the route declarations.

Every operation comes from :data:`app.api.frame.ROUTES` and its marshmallow schemas
(apispec), so the description cannot drift from what the frame enforces.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from app.api.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPES
from app.api.frame import ROUTES, RouteSpec
from app.api.permissions import PERMISSIONS

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
_PATH_PARAM = re.compile(r"<(?:[a-z_]+:)?([a-zA-Z_][a-zA-Z0-9_]*)>")
# Errors any authenticated operation may answer (429 only where rate limits are on).
_AUTH_ERRORS = (401, 403, 404, 429)


def build_spec(server_url: str = "/") -> dict[str, Any]:
    """The whole description as a dict (RFC: OpenAPI Specification 3.1.0)."""
    spec = APISpec(
        title="Roster API", version=API_VERSION, openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={"description": "Operator, customer-admin, auditor and portal API. "
                             "Authenticate with 'Authorization: Bearer rk_...'. A method "
                             "a path does not list, OPTIONS included (no CORS is served), "
                             "is a 405 problem with an Allow header."},
        servers=[{"url": server_url}],
    )
    spec.components.security_scheme("apiKey", {"type": "http", "scheme": "bearer",
                                               "description": "An API key (rk_...)."})
    from app.api.schemas import ProblemSchema

    spec.components.schema("Problem", schema=ProblemSchema)
    for route in sorted(ROUTES.values(), key=lambda r: (r.rule, r.endpoint)):
        path = _PATH_PARAM.sub(r"{\1}", route.rule)
        spec.path(path=path, operations={m.lower(): _operation(route) for m in route.methods
                                         if m != "HEAD"},
                  parameters=[{"in": "path", "name": n, "required": True,
                               "schema": {"type": "string", "minLength": 1}}
                              for n in _PATH_PARAM.findall(route.rule)])
    return spec.to_dict()


def _problem(status: int, description: str | None = None) -> dict[str, Any]:
    return {"description": description or PROBLEM_TYPES[status][1],
            "content": {PROBLEM_MEDIA_TYPE: {"schema": "Problem"}}}


def _operation(route: RouteSpec) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    body_schema = route.response_schema
    if route.produces:
        responses[str(route.status)] = {"description": "OK", "content": {
            media: {"schema": {"type": "string", "description": text}}
            for media, text in route.produces}}
    elif body_schema is None:
        responses["204"] = {"description": "Done."}
    elif route.permission is not None:
        responses[str(route.status)] = {"description": "OK",
                                        "content": {"application/json": {"schema": body_schema}}}
    if route.headers and str(route.status) in responses:
        responses[str(route.status)]["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in route.headers}
    operation: dict[str, Any] = {
        "operationId": route.endpoint.replace(".", "_"), "summary": route.summary,
        "description": route.description, "tags": list(route.tags) or ["api"],
        "responses": responses,
    }
    if route.permission is None:
        return operation
    roles = ", ".join(sorted(r.value for r in PERMISSIONS[route.permission]))
    operation["description"] = (f"{route.description}\n\nPermission `{route.permission}` "
                                f"(roles: {roles}).").strip()
    operation["x-permission"] = route.permission
    operation["security"] = [{"apiKey": []}]
    if route.query is not None:
        operation["parameters"] = [{"in": "query", "schema": route.query}]
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": route.body}}}
    # Every operation names what it refuses: a query parameter or a body it does not take
    # (app/api/frame.py) as well as a bad value of one it does.
    responses["400"] = _problem(400, "Invalid input; `errors` names each field.")
    if route.body is not None or not set(route.methods) <= {"GET", "HEAD"}:
        responses["413"] = _problem(413)
    if not set(route.methods) <= {"GET", "HEAD"}:
        # An If-Match with entity tags, which no /api/v1 resource has (app/api/frame.py).
        responses["412"] = _problem(412)
    if route.body is not None:
        responses["409"] = _problem(409)
        responses["415"] = _problem(415)
    for status in (*route.errors, *_AUTH_ERRORS):
        responses[str(status)] = _problem(status)
    responses["default"] = _problem(500, "Unexpected error (problem JSON with a request id).")
    return operation
