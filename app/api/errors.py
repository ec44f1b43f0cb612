"""RFC 9457 problem details for every /api/v1 error, registered on the API blueprint once.

Domain errors (app.errors), marshmallow validation errors, werkzeug HTTP errors (404, 405,
413, 415 ...) and unexpected exceptions all leave as ``application/problem+json`` with a
stable ``type`` URI, a ``detail`` a person can act on and the request id; never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, current_app, g, json, request
from marshmallow import ValidationError
from sqlalchemy.exc import DataError
from werkzeug.exceptions import HTTPException

from app.bearer import bearer_credential
from app.db_errors import (
    describe_transient,
    is_transient,
    prepared_statement_lost,
    transient_detail,
)
from app.errors import (
    Conflict,
    CursorExpired,
    DomainError,
    Forbidden,
    InvalidInput,
    NotFound,
    PreconditionFailed,
    Unauthorized,
)
from app.mapping.locks import retry_after
from app.migrate import NOT_READY_DETAIL, NOT_READY_RETRY_AFTER, schema_not_ready

log = logging.getLogger("roster.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://roster.dev/problems/"
AUTH_CHALLENGE = 'Bearer realm="roster-api"'

# status -> (type slug, title): the stable vocabulary clients may switch on.
PROBLEM_TYPES: dict[int, tuple[str, str]] = {
    400: ("validation", "Invalid request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    410: ("cursor-expired", "Cursor expired"),
    412: ("precondition-failed", "Precondition failed"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal", "Internal server error"),
    503: ("unavailable", "Service busy"),
}
_DOMAIN_STATUS: dict[type[DomainError], int] = {
    InvalidInput: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
    PreconditionFailed: 412, CursorExpired: 410,
}


@dataclass
class ApiProblem(Exception):
    """An error the frame raises on purpose with its exact status and detail."""

    status: int
    detail: str
    errors: list[dict[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


def problem_type(status: int) -> str:
    """The stable ``type`` URI of a status (``about:blank`` semantics for unknown ones)."""
    slug = PROBLEM_TYPES.get(status, ("http-error", ""))[0]
    return PROBLEM_BASE + slug


def problem_response(status: int, detail: str, *, errors: list[dict[str, str]] | None = None,
                     headers: Mapping[str, str] | None = None) -> Response:
    """Render one problem document (RFC 9457 §3.1) with the request id as an extension."""
    body: dict[str, Any] = {
        "type": problem_type(status),
        "title": PROBLEM_TYPES.get(status, ("", "HTTP error"))[1],
        "status": status,
        "detail": detail,
        "instance": request.path,
        "request_id": g.get("request_id"),
    }
    if errors:
        body["errors"] = errors
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MEDIA_TYPE)
    # An error is private as the answer it replaces (it may name an organization or a key's
    # role), and a 404 or 405 is heuristically cacheable (RFC 9111 §4.2.2): no cache keeps it.
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        response.headers["WWW-Authenticate"] = AUTH_CHALLENGE
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def flatten_messages(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """Marshmallow's nested error dict -> ``[{field, detail}]`` with dotted field paths."""
    if isinstance(messages, Mapping):
        out: list[dict[str, str]] = []
        for key, value in messages.items():
            name = "body" if key == "_schema" else str(key)
            out.extend(flatten_messages(value, f"{prefix}.{name}" if prefix else name))
        return out
    if isinstance(messages, list | tuple) and all(isinstance(m, str) for m in messages):
        return [{"field": prefix or "body", "detail": str(m)} for m in messages]
    if isinstance(messages, list | tuple):
        return [e for m in messages for e in flatten_messages(m, prefix)]
    return [{"field": prefix or "body", "detail": str(messages)}]


def http_problem(exc: HTTPException) -> Response:
    """A werkzeug HTTP error (routing 404/405, 413, 415, bad JSON) as a problem."""
    status = exc.code or 500
    headers = {k: v for k, v in exc.get_headers() if k.lower() == "allow"}
    detail = exc.description or exc.name
    if status == 404:
        detail = f"no API resource at {request.path}; see /api/v1/openapi.json"
    elif status == 405:
        detail = f"{request.method} is not allowed here; allowed: {headers.get('Allow', '-')}"
    return problem_response(status, detail, headers=headers)


def unexpected_problem(exc: Exception) -> Response:
    """Log an unexpected error with its request id and answer 500 without details."""
    log.error("unhandled API error", exc_info=exc, extra={"request_id": g.get("request_id")})
    return problem_response(500, "an unexpected error occurred; quote the request id "
                                 f"{g.get('request_id')} when reporting it")


def register_problem_handlers(bp: Blueprint) -> None:
    """Map every error raised inside the blueprint to problem JSON (RFC 9457)."""

    @bp.errorhandler(ApiProblem)
    def _api_problem(exc: ApiProblem) -> Response:
        return problem_response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)

    @bp.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Response:
        status = next((s for cls, s in _DOMAIN_STATUS.items() if isinstance(exc, cls)), 400)
        errors = [{"field": exc.field, "detail": exc.detail}] if status == 400 and exc.field \
            else None
        headers = {"WWW-Authenticate": f'{AUTH_CHALLENGE}, error="invalid_token"'} \
            if status == 401 and bearer_credential(request.headers.get("Authorization")) \
            else None
        return problem_response(status, exc.detail, errors=errors, headers=headers)

    @bp.errorhandler(ValidationError)
    def _validation(exc: ValidationError) -> Response:
        errors = flatten_messages(exc.messages)
        names = ", ".join(sorted({e["field"] for e in errors}))
        return problem_response(400, f"invalid value for {names}", errors=errors)

    @bp.errorhandler(DataError)
    def _data(exc: DataError) -> Response:
        # The database refused a value the schemas let through (e.g. a unit path grown past
        # its column): bad input, so a 400 that says what, never a 500.
        reason = str(exc.orig).splitlines()[0] if exc.orig else "a value cannot be stored"
        return problem_response(400, f"a value cannot be stored: {reason}")

    @bp.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        return http_problem(exc)

    @bp.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if is_transient(exc):
            # Lock timeout or lost connection: nothing was committed, a retry is safe.
            log.warning("API request hit a transient database error: %s",
                        describe_transient(exc))
            return problem_response(503, transient_detail(exc),
                                    headers={"Retry-After": retry_after(
                                        current_app.extensions["roster.db"].engine, exc)})
        if schema_not_ready(current_app.extensions["roster.db"].engine, exc):
            return problem_response(503, NOT_READY_DETAIL,
                                    headers={"Retry-After": NOT_READY_RETRY_AFTER})
        prepared_statement_lost(exc)  # logs what to do about a pooler, if that is the cause
        return unexpected_problem(exc)
