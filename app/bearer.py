"""The credential of an ``Authorization: Bearer`` header (RFC 6750 §2.1), read one way for
SCIM, the API, the rate limit and the flight recorder."""

from __future__ import annotations


def bearer_credential(authorization: str | None) -> str | None:
    """The token of ``Bearer <token>`` (the scheme in any case, RFC 9110 §11.1), else None:
    no header, another scheme, or an empty credential."""
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    return credential if scheme.lower() == "bearer" and credential else None
