"""Reading SCIM request bodies (RFC 7644 §3.1, §3.12): media type, size, JSON, schemas."""

from __future__ import annotations

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
from app.scim.errors import ScimError

# application/json is what many IdPs send; RFC 7644 §3.1 asks servers to accept both.
ACCEPTED_TYPES = frozenset({"application/scim+json", "application/json"})


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
