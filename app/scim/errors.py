"""SCIM error responses (RFC 7644 §3.12): status as a string, scimType from Table 9."""

from __future__ import annotations

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


def scim_response(body: object, status: int = 200) -> Response:
    """A JSON body with the SCIM media type (RFC 7644 §3.1)."""
    return Response(dumps(body), status=status, mimetype=SCIM_MEDIA_TYPE)


def error_response(status: int, detail: str, scim_type: str | None = None, *,
                   bearer_error: str | None = None) -> Response:
    """The SCIM Error message (RFC 7644 §3.12); a 401 carries the Bearer challenge, with
    ``error="invalid_token"`` when a token was sent and refused (RFC 6750 §3, §3.1)."""
    body: dict[str, object] = {"schemas": [ERROR_SCHEMA], "status": str(status),
                               "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    response = scim_response(body, status)
    if status == 401:
        challenge = 'Bearer realm="roster-scim"'
        if bearer_error:
            challenge += f', error="{bearer_error}"'
        response.headers["WWW-Authenticate"] = challenge
    return response
