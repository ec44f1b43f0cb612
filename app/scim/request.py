"""Reading SCIM request bodies (RFC 7644 §3.1, §3.12): media type, size, JSON, schemas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import request

from app.json_input import (
    BodyTooLarge,
    BodyUnreadable,
    JsonInputError,
    parse_json,
    read_body,
    unsupported_coding,
)
from app.scim.errors import SCIM_MEDIA_TYPE, ScimError

# application/json is what many IdPs send; RFC 7644 §3.1 asks servers to accept both.
ACCEPTED_TYPES = frozenset({"application/scim+json", "application/json"})
JSON_MEDIA_TYPE = "application/json"


def response_media_type(accept: Iterable[tuple[str, float]]) -> str:
    """The media type to answer in, from the Accept header's (range, q) pairs: RFC 7644 §3.8
    "MUST support ... application/scim+json and SHOULD support ... application/json", the
    default. application/json only when the client prefers it: a higher q (RFC 9110 §12.5.1:
    the most specific range that matches decides; parameters such as ``charset`` are no
    part of the match), or the same q by a more specific range. A client accepting neither
    gets scim+json all the same, not a 406: RFC 9110 §12.5.1 lets a server disregard
    Accept, and an IdP's odd header must not stop provisioning."""
    best = {SCIM_MEDIA_TYPE: (-1, 0.0), JSON_MEDIA_TYPE: (-1, 0.0)}
    for text, quality in accept:
        media_range = text.split(";", 1)[0].strip().lower()
        for media_type, (specificity, _) in best.items():
            found = _specificity(media_range, media_type)
            if found > specificity:
                best[media_type] = (found, quality)
    (json_specificity, json_q), (scim_specificity, scim_q) = (
        best[JSON_MEDIA_TYPE], best[SCIM_MEDIA_TYPE])
    # At equal q, the one named: "application/json, */*" (axios, many HTTP libraries) asks
    # for JSON; when both are named alike, the SCIM type.
    prefers_json = json_q > 0 and (json_q, json_specificity) > (scim_q, scim_specificity)
    return JSON_MEDIA_TYPE if prefers_json else SCIM_MEDIA_TYPE


def _specificity(media_range: str, media_type: str) -> int:
    """2 for the type itself, 1 for ``application/*``, 0 for ``*/*``, -1 if it does not match."""
    if media_range == media_type:
        return 2
    if media_range == media_type.split("/")[0] + "/*":
        return 1
    return 0 if media_range == "*/*" else -1


def json_body(max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or a precise SCIM error: 415, 413, 400 invalidSyntax
    (not UTF-8 or not JSON, nesting too deep) or 400 invalidValue (a string holding NUL or
    an unpaired surrogate, app/json_input.py)."""
    mimetype = request.mimetype
    if mimetype and mimetype not in ACCEPTED_TYPES:
        raise ScimError(415, f"Content-Type {mimetype!r} is not supported; "
                             "send application/scim+json")
    coding = unsupported_coding(request.headers.get("Content-Encoding"))
    if coding:
        raise ScimError(415, f"Content-Encoding {coding!r} is not supported; send the body "
                             "uncompressed")
    try:
        raw = read_body(request, max_bytes)
    except BodyTooLarge:
        raise ScimError(413, f"the request body is larger than {max_bytes} bytes") from None
    except BodyUnreadable as exc:
        raise ScimError(exc.status, exc.detail,
                        "invalidSyntax" if exc.status == 400 else None) from None
    if not raw.strip():
        raise ScimError(400, "the request body is empty; a JSON object is required",
                        "invalidSyntax")
    try:
        body = parse_json(raw)
    except JsonInputError as exc:
        raise ScimError(400, exc.detail, "invalidSyntax" if exc.syntax else "invalidValue") \
            from None
    if not isinstance(body, dict):
        raise ScimError(400, "the request body must be a JSON object", "invalidSyntax")
    return body
