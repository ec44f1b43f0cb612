"""Versions and conditional requests (RFC 7644 §3.14, RFC 9110 §13.1)."""

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


def check_if_match(version: int) -> None:
    """A stale ``If-Match`` on PUT, PATCH or DELETE is 412 (RFC 7644 §3.14)."""
    header = request.headers.get("If-Match")
    if not header:
        return
    tags = _tags(header)
    if "*" not in tags and str(version) not in tags:
        raise ScimError(412, f"the resource changed: current version is {etag_of(version)}")


def not_modified(version: int) -> bool:
    """Whether ``If-None-Match`` names the current version, so a GET may answer 304."""
    header = request.headers.get("If-None-Match")
    if not header:
        return False
    tags = _tags(header)
    return "*" in tags or str(version) in tags


def with_etag(response: Response, version: int) -> Response:
    """Set the ETag header to the resource's version."""
    response.headers["ETag"] = etag_of(version)
    return response
