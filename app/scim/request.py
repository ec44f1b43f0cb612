"""Reading SCIM request bodies (RFC 7644 §3.1, §3.12): media type, size, JSON, schemas."""

from __future__ import annotations

import json
from typing import Any

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from app.scim.errors import ScimError

# application/json is what many IdPs send; RFC 7644 §3.1 asks servers to accept both.
ACCEPTED_TYPES = frozenset({"application/scim+json", "application/json"})


def json_body(max_bytes: int) -> dict[str, Any]:
    """The request's JSON object, or a precise SCIM error (415, 413, 400 invalidSyntax)."""
    mimetype = request.mimetype
    if mimetype and mimetype not in ACCEPTED_TYPES:
        raise ScimError(415, f"Content-Type {mimetype!r} is not supported; "
                             "send application/scim+json")
    if request.content_length is not None and request.content_length > max_bytes:
        raise ScimError(413, f"the request body is larger than {max_bytes} bytes")
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise ScimError(413, f"the request body is larger than {max_bytes} bytes") from None
    if len(raw) > max_bytes:
        raise ScimError(413, f"the request body is larger than {max_bytes} bytes")
    if not raw.strip():
        raise ScimError(400, "the request body is empty; a JSON object is required",
                        "invalidSyntax")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if hasattr(exc, "lineno") else ""
        raise ScimError(400, f"the request body is not valid JSON{where}",
                        "invalidSyntax") from None
    if not isinstance(body, dict):
        raise ScimError(400, "the request body must be a JSON object", "invalidSyntax")
    return body
