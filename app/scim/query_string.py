"""A SCIM query string decoded as Roster reads it. Pure.

Form decoding (``+`` is a space), except in a ``filter`` whose spaces are %20: there a raw
``+`` is a plus. Okta sends ``userName%20eq%20%22john+test%40okta.local%22`` (RFC 3986
allows ``+`` in a query; only form encoding makes it a space, as in Entra's
``userName+eq+...``, whose plus signs are %2B). Form decoding made that name
``john test@okta.local``: not found, so Okta created the user again and got a 409. The
views (app.scim.http) and the flight recorder's masking (app.scim.redaction) read it alike.
"""

from __future__ import annotations

from urllib.parse import unquote, unquote_plus


def query_pairs(text: str) -> list[tuple[str, str]]:
    """Every ``name=value`` of ``text`` (a raw query string) decoded, in order."""
    pairs = []
    for part in text.split("&"):
        if not part:
            continue
        name, _, raw = part.partition("=")
        key = unquote_plus(name)
        plus = key.lower() == "filter" and "+" in raw and "%20" in raw.upper()
        pairs.append((key, unquote(raw) if plus else unquote_plus(raw)))
    return pairs
