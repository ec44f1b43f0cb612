"""Redaction of SCIM bodies before the flight recorder keeps them (pure, no Flask).

Passwords, tokens and every attribute configured as sensitive are replaced by a marker,
wherever they appear: as object keys (also URN-prefixed or dotted, as path-less PATCH
values carry them) and as the target of a PATCH operation's ``path``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

MARK = "[REDACTED]"
# Never worth keeping, whatever the configuration says.
ALWAYS_SENSITIVE = frozenset({
    "password", "token", "access_token", "refresh_token", "client_secret", "secret",
    "authorization",
})
_FILTER = re.compile(r"\[[^\]]*\]")


def sensitive_names(configured: Iterable[str]) -> frozenset[str]:
    """The lower-cased attribute names to redact: the configured ones plus the built-in ones."""
    return ALWAYS_SENSITIVE | {name.lower() for name in configured}


def _leaf(name: str) -> str:
    """``urn:...:User:employeeNumber`` / ``name.givenName`` / ``emails[...].value`` -> leaf."""
    plain = _FILTER.sub("", name).lower()
    return plain.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def _is_sensitive(name: str, sensitive: frozenset[str]) -> bool:
    lowered = name.lower()
    return lowered in sensitive or _leaf(name) in sensitive


def redact_value(value: Any, sensitive: frozenset[str]) -> Any:
    """A copy of a decoded JSON value with every sensitive value replaced by the marker."""
    if isinstance(value, list):
        return [redact_value(item, sensitive) for item in value]
    if not isinstance(value, dict):
        return value
    # A PATCH operation (RFC 7644 §3.5.2) names its target in "path", not in a key.
    path = value.get("path")
    target_sensitive = isinstance(path, str) and _is_sensitive(path, sensitive)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if _is_sensitive(str(key), sensitive) or (target_sensitive and key.lower() == "value"):
            out[key] = MARK
        else:
            out[key] = redact_value(item, sensitive)
    return out


def _redact_text(text: str, sensitive: frozenset[str]) -> str:
    """Best effort for bodies that are not JSON: mask ``"name": value`` pairs by name."""
    names = "|".join(sorted(re.escape(n) for n in sensitive))
    pattern = re.compile(rf'(?i)("?(?:[\w:.]*[:.])?(?:{names})"?\s*[:=]\s*)("[^"]*"|[^,}}\s]+)')
    return pattern.sub(lambda m: m.group(1) + f'"{MARK}"', text)


def _plainly_clean(text: str, sensitive: frozenset[str]) -> bool:
    """True when no sensitive name occurs anywhere in the text, so there is nothing to mask.

    Most bodies (lookups, list pages, group PATCHes) qualify, and a substring test is far
    cheaper than decoding and walking the JSON. A JSON escape could spell a name without
    its letters (``"\\u0070assword"``), so any escape sends the body down the full path.
    """
    if "\\u" in text:
        return False
    lowered = text.lower()
    return not any(name in lowered for name in sensitive)


def redact_body(raw: bytes | None, sensitive: frozenset[str], limit: int) -> str | None:
    """The body as text to keep: redacted JSON, masked text, or only its size past ``limit``."""
    if not raw:
        return None
    if len(raw) > limit:
        return f"({len(raw)} bytes; larger than recorder.max_body_bytes, not kept)"
    text = raw.decode("utf-8", errors="replace")
    if _plainly_clean(text, sensitive):
        return text
    try:
        decoded = json.loads(text)
    except ValueError:
        return _redact_text(text, sensitive)
    return json.dumps(redact_value(decoded, sensitive), separators=(",", ":"))
