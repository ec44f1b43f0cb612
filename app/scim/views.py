"""The /scim/v2 blueprint: transaction per request, SCIM errors and media type, discovery."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, g
from werkzeug.exceptions import HTTPException

from app.errors import Conflict, DomainError, InvalidInput, NotFound, PreconditionFailed
from app.scim.auth import authenticate_request
from app.scim.errors import ScimError, error_response, scim_response

bp = Blueprint("scim", __name__, url_prefix="/scim/v2")
log = logging.getLogger(__name__)

SPC_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"


def _settings() -> dict[str, Any]:
    return current_app.config["ROSTER"]


@bp.get("/ServiceProviderConfig")
def service_provider_config() -> Response:
    """RFC 7644 §4: what this server supports, truthfully."""
    db = current_app.extensions["roster.db"]
    with db.transaction() as session:
        caller = authenticate_request(session)
        g.directory_id = caller.directory.id
    scim = _settings()["scim"]
    return scim_response({
        "schemas": [SPC_SCHEMA],
        "documentationUri": f"{_settings()['app']['base_url']}/docs/scim",
        "patch": {"supported": False},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": False, "maxResults": scim["max_filter_results"]},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token", "primary": True,
            "description": "A directory token issued by `roster directory create`.",
        }],
        "meta": {"resourceType": "ServiceProviderConfig",
                 "location": f"{_settings()['app']['base_url']}/scim/v2/ServiceProviderConfig"},
    })


_STATUS_BY_ERROR: dict[type[DomainError], tuple[int, str | None]] = {
    NotFound: (404, None),
    Conflict: (409, "uniqueness"),
    InvalidInput: (400, "invalidValue"),
    PreconditionFailed: (412, None),
}


@bp.errorhandler(ScimError)
def _scim_error(exc: ScimError) -> Response:
    return error_response(exc.status, exc.detail, exc.scim_type)


@bp.errorhandler(DomainError)
def _domain_error(exc: DomainError) -> Response:
    status, scim_type = _STATUS_BY_ERROR.get(type(exc), (400, None))
    return error_response(status, exc.detail, scim_type)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> Response:
    return error_response(exc.code or 500, exc.description or exc.name)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception) -> Response:
    log.exception("unhandled SCIM error")
    return error_response(500, f"internal error; request id {g.get('request_id')}")
