"""Allow-list of portal URLs for RelayState and every redirect: no open redirect."""

from __future__ import annotations

from urllib.parse import urlsplit


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


def _climbs(path: str) -> bool:
    """Whether a browser could resolve the path above where it seems to be: a ``..``
    segment, also percent-encoded (``%2e%2e``, ``.%2E``) or with a parameter (``..;``),
    which a browser (or the server behind the portal) reads as ``..`` (RFC 3986 §5.2.4)."""
    for segment in path.split("/"):
        plain = segment.lower().replace("%2e", ".").split(";", 1)[0]
        if plain in ("..", "."):
            return True
    return False


def is_allowed_redirect(url: str, allowed: list[str]) -> bool:
    """True when ``url`` has the scheme, host and port of an allowed URL and a path under it."""
    if not url or any(ch in url for ch in "\\\r\n\t") or len(url) > 2000:
        return False
    target = _normalized(url)
    if target is None or _climbs(target[3]):
        return False
    for entry in allowed:
        base = _normalized(entry)
        if base is None or base[:3] != target[:3]:
            continue
        prefix = base[3] if base[3].endswith("/") else base[3] + "/"
        if target[3] == base[3] or target[3].startswith(prefix):
            return True
    return False
