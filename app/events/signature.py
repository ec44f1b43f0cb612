"""Webhook signatures: HMAC-SHA256 over "timestamp.body", with a replay window."""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Roster-Signature"
EVENT_ID_HEADER = "Roster-Event-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, tolerance_seconds: int = 300,
           now: float | None = None) -> bool:
    """What a receiver does: recompute, compare in constant time, reject stale timestamps."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    # As bytes: hmac.compare_digest raises on a str with non-ASCII characters.
    return hmac.compare_digest(expected.encode(), parts.get("v1", "").encode())
