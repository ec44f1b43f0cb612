"""Versions and conditional requests (RFC 7644 §3.14, RFC 9110 §13.1 and §13.2.2).

A version is the resource's own row version, and, for a group or a user with a manager,
the part that a member's or the manager's delete or restore moves without writing the
resource (app/directory/versions.py): ``"7"`` while that part never moved, else ``"7.2"``.
Each part only grows and every change moves one, so no version names two states.
"""

from __future__ import annotations

import re
from datetime import datetime

from flask import Response, request

from app.directory.versions import Moved
from app.scim.errors import ScimError


def version_of(own: int, other: Moved | None) -> str:
    """The version (opaque text) of a resource whose row has ``own`` and whose members or
    manager have moved it ``other.version`` times."""
    return f"{own}.{other.version}" if other is not None and other.version else str(own)


def last_modified(own: datetime, other: Moved | None) -> datetime:
    """meta.lastModified (RFC 7643 §3.1): the latest change of the resource as SCIM shows
    it, its own row's or the moved part's."""
    at = other.at if other is not None else None
    return at if at is not None and at > own else own


def etag_of(version: str) -> str:
    """The weak entity tag of a resource version, also used as meta.version."""
    return f'W/"{version}"'


# One element of If-Match / If-None-Match (RFC 9110 §8.8.3, §13.1.1, §5.6.1: empty ones
# allowed): an entity-tag, its opaque-tag quoted (a comma inside the quotes is part of the
# tag, not a separator), or a bare token, taken leniently as an unquoted tag or ``*``.
_ELEMENT = re.compile(
    r'[ \t]*(?:(?:W/)?(?:"([\x21\x23-\x7e\x80-\xff]*)"|([^",\s]+)))?[ \t]*(?:,|\Z)')


def _tags(header: str) -> tuple[set[str], bool] | None:
    """The opaque tags a precondition header lists and whether it holds the (unquoted)
    wildcard ``*``; None when the header is not such a list (``W/"1" junk``)."""
    tags: set[str] = set()
    wildcard = False
    position = 0
    while position < len(header):
        element = _ELEMENT.match(header, position)
        if element is None or element.end() == position:
            return None
        quoted, bare = element.groups()
        if bare == "*":
            wildcard = True
        elif quoted is not None or bare is not None:
            tags.add(quoted if quoted is not None else bare)
        position = element.end()
    return tags, wildcard


def _names(header: str | None, version: str) -> bool | None:
    """Whether a precondition header names ``version`` (or ``*``); None when absent.

    Versions compare weakly, as RFC 7644 §3.14's own examples send ``W/"..."`` in If-Match.
    A quoted ``"*"`` is a tag like any other, not the wildcard, and ``"7,2"`` is one tag,
    not ``7`` and ``2`` (RFC 9110 §8.8.3: a comma may stand in an opaque-tag). A malformed
    header names nothing: an ``If-Match`` then fails (412), an ``If-None-Match`` holds.
    """
    if not header:
        return None
    parsed = _tags(header)
    if parsed is None:
        return False
    tags, wildcard = parsed
    return wildcard or version in tags


def check_preconditions(version: str) -> None:
    """The preconditions of PUT, PATCH and DELETE on an existing resource (RFC 9110 §13.2.2).

    A stale ``If-Match`` is 412 (RFC 7644 §3.14). So is an ``If-None-Match`` naming the current
    version or ``*`` (RFC 9110 §13.1.2: a method other than GET or HEAD fails with 412).
    """
    if _names(request.headers.get("If-Match"), version) is False:
        raise ScimError(412, f"the resource changed: current version is {etag_of(version)}")
    if _names(request.headers.get("If-None-Match"), version):
        raise ScimError(412, f"If-None-Match names the current version {etag_of(version)}")


def check_create_preconditions() -> None:
    """The preconditions of a create, ``POST /Users`` or ``POST /Groups`` (RFC 9110 §13.2.2).

    The target resource of the POST is the collection, not the resource it creates; the
    collection exists (GET answers it) and has no entity tag. So ``If-Match: *`` holds and
    an ``If-Match`` listing entity tags cannot (§13.1.1: 412); ``If-None-Match: *`` fails
    (§13.1.2: 412 for a method other than GET or HEAD) and one listing entity tags holds.
    """
    untagged_not_modified(safe=False)


def untagged_not_modified(*, safe: bool) -> bool:
    """The preconditions of a request to a resource that exists and has no entity tag
    (RFC 9110 §13.2.2): a collection (``/Users``, ``/Groups``, their ``.search`` and the root
    ``/.search``, whose lists carry no ETag, as on a create) or a discovery endpoint.
    Whether a GET may answer 304. So
    ``If-Match: *`` holds and an ``If-Match`` listing entity tags is 412 (§13.1.1);
    ``If-None-Match: *`` fails: a GET or HEAD (``safe``) answers 304, any other method 412
    (§13.1.2); an ``If-None-Match`` listing entity tags holds.
    """
    if_match = request.headers.get("If-Match")
    if if_match:
        parsed = _tags(if_match)
        if parsed is None or not parsed[1]:
            raise ScimError(412, "If-Match names an entity tag, and this resource has none "
                                 "(RFC 9110 section 13.1.1)")
    if_none_match = request.headers.get("If-None-Match")
    parsed = _tags(if_none_match) if if_none_match else None
    if parsed is None or not parsed[1]:
        return False
    if safe:
        return True
    raise ScimError(412, "If-None-Match: * fails: this resource exists "
                         "(RFC 9110 section 13.1.2)")


def not_modified(version: str) -> bool:
    """The preconditions of a GET (RFC 9110 §13.2.2): whether it may answer 304.

    ``If-None-Match`` naming the current version gives 304 (RFC 7644 §3.14). An ``If-Match``
    that does not name it is evaluated first and gives 412 (RFC 9110 §13.1.1).
    """
    if _names(request.headers.get("If-Match"), version) is False:
        raise ScimError(412, f"If-Match does not name the current version {etag_of(version)}")
    return bool(_names(request.headers.get("If-None-Match"), version))


def with_etag(response: Response, version: str) -> Response:
    """Set the ETag header to the resource's version."""
    response.headers["ETag"] = etag_of(version)
    return response
