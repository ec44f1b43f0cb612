"""SCIM error responses (RFC 7644 §3.12): status as a string, scimType from Table 9."""

from __future__ import annotations

from typing import Any

from flask import Response

from app.json_output import dumps

SCIM_MEDIA_TYPE = "application/scim+json"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(Exception):
    """An error to answer in SCIM format."""

    def __init__(self, status: int, detail: str, scim_type: str | None = None, *,
                 bearer_error: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        # A 401's RFC 6750 §3.1 error code (``invalid_token``), none when no token was sent.
        self.bearer_error = bearer_error


def require_message_schema(schemas: object, urn: str) -> None:
    """A message's ``schemas`` must list its URN (PatchOp, BulkRequest, SearchRequest:
    RFC 7644 §3.5.2, §3.7, §3.4.3), in any case; else 400 invalidSyntax."""
    if not isinstance(schemas, list) or urn.lower() not in {
            s.lower() for s in schemas if isinstance(s, str)}:
        raise ScimError(400, f"'schemas' must be [\"{urn}\"]", "invalidSyntax")


def message_members(message: dict[str, Any], where: str = "") -> dict[str, Any]:
    """A message's members keyed in lower case: their names are case-insensitive (RFC 7644
    §3.10; Entra capitalises them). One name given twice (``path`` and ``PATH``) is 400
    invalidSyntax, as a resource's attribute given twice is: taking either one would change
    what the client did not name."""
    members: dict[str, Any] = {}
    for key, value in message.items():
        lowered = key.lower()
        if lowered in members:
            raise ScimError(400, f"{where}'{lowered}' is given twice", "invalidSyntax")
        members[lowered] = value
    return members


def scim_response(body: object, status: int = 200) -> Response:
    """A JSON body with the SCIM media type (RFC 7644 §3.1)."""
    return Response(dumps(body), status=status, mimetype=SCIM_MEDIA_TYPE)


def error_response(status: int, detail: str, scim_type: str | None = None, *,
                   bearer_error: str | None = None) -> Response:
    """The SCIM Error message (RFC 7644 §3.12); a 401 carries the Bearer challenge, with
    ``error="invalid_token"`` when a token was sent and refused (RFC 6750 §3, §3.1).

    ``Cache-Control: no-store``, as gunicorn's SCIM errors (app/ops/http_worker.py) and the
    API's and OAuth's errors say: a 404, 405 or 501 is heuristically cacheable (RFC 9111
    §4.2.2), and an error is as private as the answer it replaces."""
    body: dict[str, object] = {"schemas": [ERROR_SCHEMA], "status": str(status),
                               "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    response = scim_response(body, status)
    response.headers["Cache-Control"] = "no-store"
    if status == 401:
        challenge = 'Bearer realm="roster-scim"'
        if bearer_error:
            challenge += f', error="{bearer_error}"'
        response.headers["WWW-Authenticate"] = challenge
    return response
