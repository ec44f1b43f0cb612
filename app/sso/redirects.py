"""Allow-list of portal URLs for RelayState and every redirect: no open redirect.

An allowed URL admits itself and, as a prefix, the paths under it. The OAuth 2.0 Security
BCP asks for exact string matching of redirect URIs (RFC 9700 §2.1, §4.1.3); a prefix is
safe only while every server reading the path sees the same path. A server that decodes
percent-encodings and then normalizes (RFC 3986 §6.2.2) reads ``/app/..%2f..%2fadmin`` as
``/admin``: a URL whose path holds a dot segment (plain, percent-encoded, encoded twice,
with a parameter ``..;``, or in full-width characters), an encoded slash or backslash
(``%2F``, ``%5C``) or a percent-encoding that is no UTF-8 (an overlong ``%C0%AE``, RFC
3629 §10) is therefore allowed only when it equals an allowed URL exactly.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote, urlsplit

# Decoding rounds looked through: a path still encoded after that is nobody's portal page.
_ROUNDS = 3
_DOTS = (".", "..")


def _normalized(url: str) -> tuple[str, str, int | None, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
        return None
    default = 443 if parts.scheme == "https" else 80
    return parts.scheme, parts.hostname.lower(), port or default, parts.path or "/"


def _has_dot_segment(path: str) -> bool:
    """A ``.`` or ``..`` segment (RFC 3986 §3.3), also with a parameter (``..;x``), which
    a browser or servlet container resolves (RFC 3986 §5.2.4)."""
    return any(segment.split(";", 1)[0] in _DOTS for segment in path.split("/"))


def _ambiguous(path: str) -> bool:
    """Whether a server that decodes and normalizes the path (RFC 3986 §6.2.2) could read
    another path than its segments say: a dot segment, an encoded slash or backslash, or
    an encoding that is no UTF-8, in the path as sent or after up to ``_ROUNDS`` decodings
    (``%252e`` is ``%2e`` once decoded, ``.`` twice)."""
    current = path
    for _ in range(_ROUNDS):
        lowered = current.lower()
        if "%2f" in lowered or "%5c" in lowered or _has_dot_segment(current):
            return True
        try:
            decoded = unquote(current, errors="strict")
        except UnicodeDecodeError:
            return True
        # NFKC: full-width dots and solidi (U+FF0E, U+FF0F, U+FF3C) become ./\ on servers
        # that normalize Unicode.
        decoded = unicodedata.normalize("NFKC", decoded)
        if "\\" in decoded or _has_dot_segment(decoded):
            return True
        if decoded == current:
            return False
        current = decoded
    return True


def is_allowed_redirect(url: str, allowed: list[str]) -> bool:
    """True when ``url`` equals an allowed URL, or has the scheme, host and port of one and
    an unambiguous path under it (:func:`_ambiguous`)."""
    if not url or any(ch in url for ch in "\\\r\n\t") or len(url) > 2000:
        return False
    target = _normalized(url)
    if target is None:
        return False
    if url in allowed:
        return True  # exact string match (RFC 9700 §4.1.3)
    if _ambiguous(target[3]):
        return False
    for entry in allowed:
        base = _normalized(entry)
        if base is None or base[:3] != target[:3]:
            continue
        prefix = base[3] if base[3].endswith("/") else base[3] + "/"
        if target[3] == base[3] or target[3].startswith(prefix):
            return True
    return False
