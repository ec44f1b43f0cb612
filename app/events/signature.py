"""Webhook signatures: HMAC-SHA256 over "timestamp.body", with a replay window.

During a rotation of ``webhooks.secret`` the header carries one ``v1`` per secret (the
previous one's first, the current one's last), as Stripe's ``Stripe-Signature`` does: a
receiver accepts the POST if any ``v1`` matches a secret it holds, so it can switch to the
new secret at its own pace. A receiver that keeps only the last ``v1`` of the header (a
``dict`` of its parts, the README's recipe before rotation) checks the current secret's.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence

SIGNATURE_HEADER = "Roster-Signature"
EVENT_ID_HEADER = "Roster-Event-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body,
                    hashlib.sha256).hexdigest()


def sign(secret: str, timestamp: int, body: bytes, previous: str = "") -> str:
    """The header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">``; with a
    ``previous`` secret (a rotation) ``t=...,v1=<previous's>,v1=<secret's>``: the current
    secret's signature last, where a receiver that keeps one ``v1`` (the last) finds it."""
    macs = [_mac(s, timestamp, body) for s in dict.fromkeys([previous, secret]) if s]
    return ",".join([f"t={timestamp}", *(f"v1={m}" for m in macs)])


def verify(secret: str | Sequence[str], header: str, body: bytes, *,
           tolerance_seconds: int = 300, now: float | None = None) -> bool:
    """What a receiver does: recompute with each secret it holds, accept if any ``v1`` of the
    header matches (compared in constant time), reject stale timestamps."""
    timestamp_text, signatures = "", []
    for part in header.split(","):
        name, _, value = part.partition("=")
        if name.strip() == "t":
            timestamp_text = value.strip()
        elif name.strip() == "v1":
            # As bytes: hmac.compare_digest raises on a str with non-ASCII characters.
            signatures.append(value.strip().encode())
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance_seconds:
        return False
    secrets = [secret] if isinstance(secret, str) else list(secret)
    expected = [_mac(s, timestamp, body).encode() for s in secrets if s]
    # Every pair compared (no early exit): the time taken says nothing of which matched.
    return sum(hmac.compare_digest(e, s) for e in expected for s in signatures) > 0
