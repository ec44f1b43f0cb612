"""Opaque, tamper-evident pagination cursors (RFC 9865 §2).

A cursor is base64url(JSON) "." base64url(HMAC-SHA256), keyed by the caller's secret. It holds
the keyset position (sort value and id), the direction, and a fingerprint of the query, so a
cursor replayed with another filter or sort order is refused rather than silently wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from app.scim.errors import ScimError

CursorValue = str | bool | datetime | None


@dataclass(frozen=True)
class Position:
    """Rows strictly after (``next``) or before (``previous``) the row (value, id)."""

    direction: Literal["next", "previous"]
    value: CursorValue
    id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, body: str) -> str:
    return _b64(hmac.new(key, body.encode("ascii"), hashlib.sha256).digest()[:16])


def invalid_cursor(detail: str) -> ScimError:
    """The 400 invalidCursor error (RFC 9865 §2.4)."""
    return ScimError(400, detail, "invalidCursor")


def encode_cursor(position: Position, fingerprint: str, key: bytes) -> str:
    """Serialise a keyset position for ``nextCursor`` / ``previousCursor`` (RFC 9865 §2.2)."""
    value: Any = position.value
    if isinstance(value, datetime):
        value = {"t": value.isoformat()}
    payload = {"d": position.direction[0], "v": value, "i": position.id, "q": fingerprint}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_mac(key, body)}"


def decode_cursor(text: str, fingerprint: str, key: bytes, value_type: str) -> Position:
    """Check and read a cursor; anything altered, foreign or malformed is invalidCursor."""
    body, dot, mac = text.partition(".")
    if not dot or not body.isascii() or not mac.isascii() or not hmac.compare_digest(
            mac.encode("ascii"), _mac(key, body).encode("ascii")):
        raise invalid_cursor("The cursor is not one this server issued; start again with "
                             "cursor= (empty) for the first page")
    try:
        payload = json.loads(_unb64(body))
        direction = {"n": "next", "p": "previous"}[payload["d"]]
        row_id, raw, query = payload["i"], payload["v"], payload["q"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid_cursor("The cursor is malformed") from None
    if query != fingerprint:
        raise invalid_cursor("The cursor belongs to a different filter, sortBy or sortOrder; "
                             "keep them unchanged while paging")
    if not isinstance(row_id, str):
        raise invalid_cursor("The cursor is malformed")
    return Position(direction, _value(raw, value_type), row_id)  # type: ignore[arg-type]


def _value(raw: Any, value_type: str) -> CursorValue:
    if raw is None:
        return None
    if value_type == "dateTime" and isinstance(raw, dict) and isinstance(raw.get("t"), str):
        try:
            return datetime.fromisoformat(raw["t"])
        except ValueError:
            raise invalid_cursor("The cursor is malformed") from None
    if value_type == "boolean" and isinstance(raw, bool):
        return raw
    if value_type not in ("dateTime", "boolean") and isinstance(raw, str):
        return raw
    raise invalid_cursor("The cursor is malformed")


def query_fingerprint(*parts: str | None) -> str:
    """A short digest of what a cursor must be replayed with."""
    text = json.dumps(parts, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
