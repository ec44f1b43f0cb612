"""Versions and conditional requests (RFC 7644 §3.14, RFC 9110 §13.1 and §13.2.2)."""

from __future__ import annotations

from flask import Response, request

from app.scim.errors import ScimError


def etag_of(version: int) -> str:
    """The weak entity tag of a resource version, also used as meta.version."""
    return f'W/"{version}"'


def _tags(header: str) -> set[str]:
    tags = set()
    for part in header.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        tags.add(part.strip('"'))
    return tags


def _names(header: str | None, version: int) -> bool | None:
    """Whether a precondition header names ``version`` (or ``*``); None when absent.

    Versions compare weakly, as RFC 7644 §3.14's own examples send ``W/"..."`` in If-Match.
    """
    if not header:
        return None
    tags = _tags(header)
    return "*" in tags or str(version) in tags


def check_preconditions(version: int) -> None:
    """The preconditions of PUT, PATCH and DELETE on an existing resource (RFC 9110 §13.2.2).

    A stale ``If-Match`` is 412 (RFC 7644 §3.14). So is an ``If-None-Match`` naming the current
    version or ``*`` (RFC 9110 §13.1.2: a method other than GET or HEAD fails with 412).
    """
    if _names(request.headers.get("If-Match"), version) is False:
        raise ScimError(412, f"the resource changed: current version is {etag_of(version)}")
    if _names(request.headers.get("If-None-Match"), version):
        raise ScimError(412, f"If-None-Match names the current version {etag_of(version)}")


def not_modified(version: int) -> bool:
    """The preconditions of a GET (RFC 9110 §13.2.2): whether it may answer 304.

    ``If-None-Match`` naming the current version gives 304 (RFC 7644 §3.14). An ``If-Match``
    that does not name it is evaluated first and gives 412 (RFC 9110 §13.1.1).
    """
    if _names(request.headers.get("If-Match"), version) is False:
        raise ScimError(412, f"If-Match does not name the current version {etag_of(version)}")
    return bool(_names(request.headers.get("If-None-Match"), version))


def with_etag(response: Response, version: int) -> Response:
    """Set the ETag header to the resource's version."""
    response.headers["ETag"] = etag_of(version)
    return response
