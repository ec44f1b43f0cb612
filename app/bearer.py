"""The credential of an ``Authorization: Bearer`` header (RFC 6750 §2.1), read one way for
SCIM, the API, the rate limit and the flight recorder."""

from __future__ import annotations

import hashlib
from typing import NamedTuple

from flask import g, request


class Presented(NamedTuple):
    """A request's bearer credential and its SHA-256 hex digest, the name the rate limits
    keep it under (never the secret itself)."""

    credential: str
    digest: str


_UNREAD = object()


def bearer_credential(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` (the scheme in any case, RFC 9110 §11.1), else None:
    no header, another scheme, or an empty credential."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None


def digest_of(credential: str) -> str:
    """SHA-256 hex of a credential (any str: a header's latin-1 text or a form's)."""
    return hashlib.sha256(credential.encode("utf-8", "surrogatepass")).hexdigest()


def presented_bearer() -> Presented | None:
    """This request's bearer credential and digest, read and hashed once per request: the
    per-credential rate limit, the failed-authentication limit before the view and after
    it all ask (app/api/ratelimit.py, app/api/authlimit.py)."""
    ctx = g._get_current_object()  # type: ignore[attr-defined]
    found = ctx.get("bearer_presented", _UNREAD)
    if found is _UNREAD:
        credential = bearer_credential(request.headers.get("Authorization"))
        found = None if credential is None else Presented(credential, digest_of(credential))
        ctx.bearer_presented = found
    return found  # type: ignore[return-value]
