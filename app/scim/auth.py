"""Bearer-token authentication of the calling directory (RFC 7644 §2, RFC 6750)."""

from __future__ import annotations

from dataclasses import dataclass

from flask import request
from sqlalchemy.orm import Session

from app.bearer import bearer_credential
from app.db import Reader
from app.directory.directories import hold_active_directory
from app.directory.oauth_clients import authenticate_bearer
from app.directory.refs import DirectoryRef, TokenRef
from app.errors import Unauthorized
from app.scim.errors import ScimError


@dataclass(frozen=True)
class Caller:
    """The authenticated directory behind a SCIM request."""

    directory: DirectoryRef
    # A long-lived directory token, or an OAuth access token (issue 5).
    token: TokenRef


def authenticate_request(session: Reader) -> Caller:
    """Read ``Authorization: Bearer``; a missing or bad token is a SCIM 401."""
    credential = bearer_credential(request.headers.get("Authorization"))
    if credential is None:
        raise ScimError(401, "authentication required: send Authorization: Bearer <token>")
    try:
        directory, token = authenticate_bearer(session, credential)
    except Unauthorized as exc:
        raise ScimError(401, exc.detail, bearer_error="invalid_token") from None
    return Caller(directory=directory, token=token)


def hold_directory(session: Session, caller: Caller, *, status_read: bool) -> None:
    """Hold the caller's directory active for this write transaction, then its
    organization's mapping lock shared (on PostgreSQL one statement when the try succeeds:
    ``hold_active_directory``); disabled meanwhile (a disable committed since
    authentication) is the same 401 authentication answers."""
    try:
        hold_active_directory(session, caller.directory.id, status_read=status_read,
                              mapping_of=caller.directory.organization_id)
    except Unauthorized as exc:
        raise ScimError(401, exc.detail, bearer_error="invalid_token") from None
