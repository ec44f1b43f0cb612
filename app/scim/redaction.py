"""Redaction of SCIM bodies before the flight recorder keeps them (pure, no Flask).

Passwords, tokens and every attribute configured as sensitive are replaced by a marker,
wherever they appear: as object keys (also URN-prefixed or dotted, as path-less PATCH
values carry them) and as the target of a PATCH operation's ``path``; in an error response,
where its ``detail`` quotes one of the request's sensitive values back.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.parse
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from app.scim.query_string import query_pairs
from app.scim.sensitive_keys import MARK, spliceable
from app.scim.sensitive_keys import spliced as splice
from app.url_masks import SECRET_PARAMETER

# Never worth keeping, whatever the configuration says.
ALWAYS_SENSITIVE = frozenset({
    "password", "token", "access_token", "refresh_token", "client_secret", "secret",
    "authorization",
})
_FILTER = re.compile(r"\[[^\]]*\]")


def sensitive_names(configured: Iterable[str]) -> frozenset[str]:
    """The lower-cased attribute names to redact: the configured ones plus the built-in ones."""
    return ALWAYS_SENSITIVE | {name.lower() for name in configured}


def _parts(name: str) -> list[str]:
    """The attribute and sub-attribute names of a path, lower-cased:
    ``urn:...:User:employeeNumber`` -> employeenumber, ``name.givenName`` -> name,
    givenname, ``emails[type eq "work"].value`` -> emails, value."""
    plain = _FILTER.sub("", name.strip()).lower()
    return plain.rsplit(":", 1)[-1].split(".")


@lru_cache(maxsize=4096)
def _is_sensitive(name: str, sensitive: frozenset[str]) -> bool:
    """Whether ``name`` (a key or a path) names a sensitive attribute or a sub-attribute of
    one: ``phoneNumbers[type eq "mobile"].value`` (Entra's PATCH path) is a phone number
    when ``phoneNumbers`` is sensitive. Whitespace around it is ignored, as the PATCH
    engine ignores it (``" password"`` as a path or a path-less key sets the password)."""
    # Bodies repeat the same few hundred keys, so the answer is cached per (key, names).
    lowered = name.strip().lower()
    return lowered in sensitive or any(part in sensitive for part in _parts(name))


def _targets_sensitive(operation: dict[str, Any], sensitive: frozenset[str]) -> bool:
    """Whether a PATCH operation's ``path`` names a sensitive attribute. Its members are
    read in any case, as the PATCH engine reads them (``PATH``, app.scim.errors
    message_members; a request giving two is refused, but recorded all the same)."""
    return any(isinstance(key, str) and key.lower() == "path" and isinstance(item, str)
               and _is_sensitive(item, sensitive) for key, item in operation.items())


# A comparison of a filter (RFC 7644 §3.4.2.2): its attribute path, operator and value (a
# string, also one left unclosed, or a bare word). Lenient: recorded filters may be invalid.
_COMPARISON = re.compile(r'(?i)([\w:.$-]+)(\s+(?:eq|ne|co|sw|ew|gt|ge|lt|le)\s+)'
                         r'("(?:[^"\\]|\\.)*"?|[^\s()\[\]]+)')
_FILTER_KEYS = frozenset({"filter", "path"})  # .search bodies and PATCH operations
# The attribute a value filter's "[" follows (a space before it is refused, yet recorded).
_OUTER = re.compile(r"([\w:.$-]+)\s*$")


def _compares_sensitive(text: str, match: re.Match[str], sensitive: frozenset[str]) -> bool:
    """Whether a comparison of ``text`` (a ``_COMPARISON`` match) is of a sensitive attribute."""
    before = text[:match.start()]
    opening = before.rfind("[")
    # Inside a value filter (``x509Certificates[value eq ...]``), or just after one
    # (``phoneNumbers[type eq "work"].value eq ...``): its attribute counts too.
    inside = opening >= 0 and "]" not in before[opening:]
    after = match.group(1).startswith(".") and before.endswith("]") and opening >= 0
    outer = _OUTER.search(before[:opening]) if inside or after else None
    return _is_sensitive(match.group(1), sensitive) or (
        outer is not None and _is_sensitive(outer.group(1), sensitive))


def redact_filter(text: str, sensitive: frozenset[str]) -> str:
    """A filter or PATCH path with the value of each comparison of a sensitive attribute
    masked: ``employeeNumber eq "E-1"``, and ``x509Certificates[value eq "..."]`` by its
    attribute before the bracket."""
    if _plainly_clean(text, sensitive):
        return text

    def mask(match: re.Match[str]) -> str:
        if _compares_sensitive(text, match, sensitive):
            return f'{match.group(1)}{match.group(2)}"{MARK}"'
        return match.group(0)

    return _COMPARISON.sub(mask, text)


@lru_cache(maxsize=64)
def _spelling_escapes(sensitive: frozenset[str]) -> re.Pattern[str]:
    """The percent escapes (RFC 3986 §2.1) that decode to a character of a sensitive name,
    or to a backslash (which could start a ``\\u`` escape).

    Without any of them, decoding a query string cannot spell a name that is not already
    in its text: every other escape (``%20``, ``%22``, ``%40`` of an Okta lookup) and ``+``
    decode to one character that is in no name, so a name in the decoded text is one in
    the raw text, and the decode (a pure-Python loop, ~3 us for a lookup's query) is skipped.
    """
    chars = {char for name in sensitive for char in name.lower() + name.upper()} | {"\\"}
    low: dict[str, set[str]] = {}
    for char in chars:
        if ord(char) < 0x80:
            code = f"{ord(char):02X}"
            low.setdefault(code[0], set()).update((code[1], code[1].lower()))
    return re.compile("%(?:" + "|".join(f"{high}[{''.join(sorted(digits))}]"
                                         for high, digits in sorted(low.items())) + ")")


def redact_query(raw: bytes, sensitive: frozenset[str]) -> str:
    """A request's query string with the value of a parameter named sensitively masked
    (``?access_token=...``, which SCIM never reads but a client may still send; or named
    like a credential, ``?api_key=``, ``?code=``, ``?sig=``, as app/url_masks.py reads a
    URL) and its ``filter`` parameter (any case) passed through ``redact_filter``; left as
    sent when no sensitive name occurs in it."""
    text = raw.decode("utf-8", errors="replace")
    if not any(_credential_name(_query_name(part)) for part in text.split("&")) \
            and _plainly_clean(text if _spelling_escapes(sensitive).search(text) is None
                               else urllib.parse.unquote_plus(text), sensitive):
        return text
    return urllib.parse.urlencode(
        [(k, MARK if _credential_name(k) or _is_sensitive(k, sensitive)
          else redact_filter(v, sensitive) if k.lower() == "filter" else v)
         for k, v in query_pairs(text)],
        quote_via=urllib.parse.quote)


@lru_cache(maxsize=1024)
def _credential_name(name: str) -> bool:
    """Whether a query parameter's name reads like a credential's (app/url_masks.py); kept
    per name, as clients send the same few (``filter``, ``count``, ``startIndex``)."""
    return SECRET_PARAMETER.search(name) is not None


def _query_name(part: str) -> str:
    """A query parameter's name as ``query_pairs`` decodes it; most names need no decoding."""
    name = part.partition("=")[0]
    return urllib.parse.unquote_plus(name) if "%" in name or "+" in name else name


def redact_value(value: Any, sensitive: frozenset[str]) -> Any:
    """A copy of a decoded JSON value with every sensitive value replaced by the marker."""
    if isinstance(value, list):
        return [redact_value(item, sensitive) for item in value]
    if not isinstance(value, dict):
        return value
    # A PATCH operation (RFC 7644 §3.5.2) names its target in "path", not in a key.
    target_sensitive = _targets_sensitive(value, sensitive)
    out: dict[str, Any] = {}
    for key, item in value.items():
        if _is_sensitive(str(key), sensitive) or (
                target_sensitive and str(key).lower() == "value"):
            out[key] = MARK
        elif isinstance(item, str) and str(key).lower() in _FILTER_KEYS:
            out[key] = redact_filter(item, sensitive)
        else:
            out[key] = redact_value(item, sensitive)
    return out


_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _unescaped(match: re.Match[str]) -> str:
    # Kept as escapes: control characters (NUL is no storable text), a quote or backslash
    # (decoded, they would end or escape a string early) and surrogates (alone, no
    # character). What can spell a name is decoded.
    code = int(match.group(1), 16)
    if code < 0x20 or code in (0x22, 0x5C) or 0xD800 <= code <= 0xDFFF:
        return match.group(0)
    return chr(code)


def _redact_text(text: str, sensitive: frozenset[str]) -> str:
    """Best effort for bodies that are not JSON: mask ``"name": value`` pairs by name.

    ``\\uXXXX`` escapes are decoded first (the text kept shows their characters), since
    one can spell a name (``"pass\\u0077ord"``) that no pattern over the raw text sees;
    a value runs to its closing quote past escaped quotes, or to the end of a cut body.
    """
    if "\\u" in text:
        text = _ESCAPE.sub(_unescaped, text)
    names = "|".join(sorted(re.escape(n) for n in sensitive))
    pattern = re.compile(rf'(?i)("?(?:[\w:.]*[:.])?(?:{names})"?\s*[:=]\s*)'
                         rf'("(?:[^"\\]|\\.)*"?|[^,}}\s]+)')
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


def redact_own_json(raw: bytes | None, sensitive: frozenset[str], limit: int) -> str | None:
    """``redact_body`` for JSON that Roster itself serialised (its SCIM responses).

    Same result, without decoding and re-encoding the whole body (a lookup answer names
    ``employeeNumber``, so it never passes the plain-text test): each key naming a
    sensitive attribute is found in the text and only its value is decoded, to find where
    it ends, and replaced. In valid JSON a quote inside a string is escaped, so a key match
    can only start a real key (at worst, a key that itself ends in ``"name`` is masked
    too). ``json.dumps`` escapes only non-ASCII and control characters, so an ASCII name
    is always spelled out. Responses carry no PATCH operations, so the ``path`` rule of
    ``redact_value`` has nothing to apply to. Anything unexpected takes ``redact_body``.
    """
    if not raw or len(raw) > limit:
        return redact_body(raw, sensitive, limit)
    text = raw.decode("utf-8", errors="replace")
    spliced = splice(text, sensitive)
    return redact_body(raw, sensitive, limit) if spliced is None else spliced


_NOT_JSON = object()


def _wide_json(raw: bytes) -> Any:
    """The body as UTF-16 or UTF-32 JSON, else _NOT_JSON."""
    encoding = json.detect_encoding(raw)
    if encoding.startswith("utf-8"):
        return _NOT_JSON
    try:
        return json.loads(raw.decode(encoding))
    except ValueError:  # UnicodeDecodeError included
        return _NOT_JSON


def redact_body(raw: bytes | None, sensitive: frozenset[str], limit: int) -> str | None:
    """The body as text to keep: redacted JSON, masked text, or only its size past ``limit``.

    A body holding NUL bytes is no UTF-8 JSON: read as UTF-8, "p\0a\0s\0s\0..." (UTF-16)
    hid a password from the search for sensitive names, and PostgreSQL text cannot hold NUL.
    Such a body is kept only as the UTF-16 or UTF-32 JSON its first bytes say it is (RFC 4627
    §3), redacted; anything else with NUL bytes is not kept (Roster refused it anyway).
    """
    if not raw:
        return None
    if len(raw) > limit:
        return f"({len(raw)} bytes; larger than recorder.max_body_bytes, not kept)"
    if b"\x00" in raw:
        wide = _wide_json(raw)
        if wide is _NOT_JSON:
            return f"({len(raw)} bytes holding NUL bytes, not JSON; not kept)"
        return json.dumps(redact_value(wide, sensitive), separators=(",", ":"))
    text = raw.decode("utf-8", errors="replace")
    if _plainly_clean(text, sensitive):
        return text
    try:
        decoded = json.loads(text)
    except ValueError:
        return _redact_text(text, sensitive)
    # A create's body (it names employeeNumber) kept as sent, its sensitive values masked
    # in place: walking and re-encoding the decoded body cost ~7 % of a SCIM create.
    spliced = splice(text, sensitive) if spliceable(text) else None
    if spliced is not None:
        return spliced
    return json.dumps(redact_value(decoded, sensitive), separators=(",", ":"))


def given_secrets(raw: bytes | None, query: bytes, sensitive: frozenset[str],
                  limit: int) -> set[str]:
    """The values a request gives sensitive attributes, as text: what ``redact_body`` and
    ``redact_query`` mask in it (string and number leaves, filter comparison values). An
    error answering the request may quote one (app/scim/values.py, the filter parser)."""
    found: set[str] = set()
    for key, value in query_pairs(query.decode("utf-8", errors="replace")):
        if _is_sensitive(key, sensitive):
            found.add(value)
        elif key.lower() == "filter":
            found.update(_compared(value, sensitive))
    if raw and len(raw) <= limit:
        # Not JSON (or nested too deep): such a body was refused before any value was read.
        with contextlib.suppress(ValueError, RecursionError):
            _collect(json.loads(raw), sensitive, found, False)
    return {value for value in found if value.strip()}


def _compared(text: str, sensitive: frozenset[str]) -> list[str]:
    """The values a filter or PATCH path compares sensitive attributes with, unquoted."""
    return [match.group(3).strip("\"'") for match in _COMPARISON.finditer(text)
            if _compares_sensitive(text, match, sensitive)]


def _collect(value: Any, sensitive: frozenset[str], found: set[str], secret: bool) -> None:
    """Add to ``found`` what ``redact_value`` would mask in ``value`` (all of it: ``secret``)."""
    if isinstance(value, list):
        for item in value:
            _collect(item, sensitive, found, secret)
    elif isinstance(value, dict):
        target = _targets_sensitive(value, sensitive)
        for key, item in value.items():
            masked = secret or _is_sensitive(str(key), sensitive) or (
                target and str(key).lower() == "value")
            if isinstance(item, str) and not masked and str(key).lower() in _FILTER_KEYS:
                found.update(_compared(item, sensitive))
            else:
                _collect(item, sensitive, found, masked)
    elif secret and isinstance(value, str | int | float) and not isinstance(value, bool):
        found.add(str(value))


def mask_secrets(body: str | None, secrets: set[str]) -> str | None:
    """An error response (kept by the flight recorder) with each of ``secrets`` masked where
    its ``detail`` quotes it, also cut short (``'E-1234...``, app/scim/values.py shows 37
    characters); a short one (under 4 characters) only where it stands quoted alone."""
    if not body or not secrets:
        return body
    try:
        error = json.loads(body)
    except ValueError:
        return body
    detail = error.get("detail") if isinstance(error, dict) else None
    if not isinstance(detail, str):
        return body
    masked = detail
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) < 4:
            for quote in "'\"":
                masked = masked.replace(f"{quote}{secret}{quote}", f"{quote}{MARK}{quote}")
            continue
        masked = masked.replace(secret, MARK)
        for cut in range(len(secret) - 1, 7, -1):
            masked = masked.replace(f"{secret[:cut]}...", f"{MARK}...")
    if masked == detail:
        return body
    error["detail"] = masked
    return json.dumps(error, separators=(",", ":"))
