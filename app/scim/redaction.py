"""Redaction of SCIM bodies before the flight recorder keeps them (pure, no Flask).

Passwords, tokens and every attribute configured as sensitive are replaced by a marker,
wherever they appear: as object keys (also URN-prefixed or dotted, as path-less PATCH
values carry them) and as the target of a PATCH operation's ``path``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Iterable
from functools import lru_cache
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


_SPACE_RE = re.compile(r"\s+")


def _leaf(name: str) -> str:
    """``urn:...:User:employeeNumber`` / ``name.givenName`` / ``emails[...].value`` -> leaf."""
    plain = _SPACE_RE.sub("", _FILTER.sub("", name)).lower()
    return plain.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


@lru_cache(maxsize=4096)
def _is_sensitive(name: str, sensitive: frozenset[str]) -> bool:
    # Bodies repeat the same few hundred keys, so the answer is cached per (key, names).
    # Attribute names hold no whitespace (RFC 7643 §2.1 ATTRNAME), and a PATCH path may
    # carry some around or inside it (`` password ``, app.scim.filter_lexer): ignored.
    lowered = _SPACE_RE.sub("", name).lower()
    return lowered in sensitive or _leaf(name) in sensitive


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


def redact_filter(text: str, sensitive: frozenset[str]) -> str:
    """A filter or PATCH path with the value of each comparison of a sensitive attribute
    masked: ``employeeNumber eq "E-1"``, and ``x509Certificates[value eq "..."]`` by its
    attribute before the bracket."""
    if _plainly_clean(text, sensitive):
        return text

    def mask(match: re.Match[str]) -> str:
        path, operator = match.group(1), match.group(2)
        opening = text.rfind("[", 0, match.start())
        inside = opening >= 0 and "]" not in text[opening:match.start()]
        outer = re.search(r"[\w:.$-]+$", text[:opening]) if inside else None
        if _is_sensitive(path, sensitive) or (
                outer is not None and _is_sensitive(outer.group(), sensitive)):
            return f'{path}{operator}"{MARK}"'
        return match.group(0)

    return _COMPARISON.sub(mask, text)


def redact_query(raw: bytes, sensitive: frozenset[str]) -> str:
    """A request's query string with the value of a parameter named sensitively masked
    (``?access_token=...``, which SCIM never reads but a client may still send) and its
    ``filter`` parameter (any case) passed through ``redact_filter``; left as sent when no
    sensitive name occurs in it."""
    text = raw.decode("utf-8", errors="replace")
    if _plainly_clean(urllib.parse.unquote_plus(text), sensitive):
        return text
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
    return urllib.parse.urlencode(
        [(k, MARK if _is_sensitive(k, sensitive)
          else redact_filter(v, sensitive) if k.lower() == "filter" else v) for k, v in pairs],
        quote_via=urllib.parse.quote)


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


_DECODER = json.JSONDecoder()
_SPACE = " \t\r\n"


def _skip_space(text: str, index: int) -> int:
    while index < len(text) and text[index] in _SPACE:
        index += 1
    return index


def _sensitive_values(text: str, lowered: str, sensitive: frozenset[str]) -> list[int] | None:
    """Where the value of each key naming a sensitive attribute (also URN-prefixed or dotted,
    like ``_leaf``) starts, in text order; None when a candidate's prefix holds an escape,
    which only the full walk reads right. Found with ``str.find``: ten times faster than a
    case-insensitive regular expression over the whole body."""
    starts: list[int] = []
    for name in sensitive:
        at = lowered.find(name)
        while at >= 0:
            end = at + len(name)
            key = _key_end(text, at, end)
            if key is None:
                return None
            if key:
                colon = _skip_space(text, end + 1)
                if text[colon:colon + 1] == ":":
                    starts.append(_skip_space(text, colon + 1))
            at = lowered.find(name, at + 1)
    return sorted(starts)


def _key_end(text: str, at: int, end: int) -> bool | None:
    """Whether ``text[at:end]`` ends a string as its last name part: a quote after it, and
    before it the opening quote or a ``:``/``.`` prefix back to the opening quote (None: the
    prefix has an escape, so where the string opens is not plain to see)."""
    if text[end:end + 1] != '"' or at == 0:
        return False
    before = text[at - 1]
    if before == '"':
        return True
    if before not in ":.":
        return False
    opening = text.rfind('"', 0, at)
    if opening < 0:
        return False
    return None if "\\" in text[opening + 1:at] else True


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
    if not raw or len(raw) > limit or not all(name.isascii() for name in sensitive):
        return redact_body(raw, sensitive, limit)
    text = raw.decode("utf-8", errors="replace")
    starts = _sensitive_values(text, text.lower(), sensitive)
    if starts is None:
        return redact_body(raw, sensitive, limit)
    if not starts:
        return text  # no sensitive key at all (most bodies)
    out: list[str] = []
    position = 0
    for start in starts:
        if start < position:
            continue  # inside a value masked already
        try:
            _value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            return redact_body(raw, sensitive, limit)
        out += (text[position:start], f'"{MARK}"')
        position = end
    out.append(text[position:])
    return "".join(out)


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
    return json.dumps(redact_value(decoded, sensitive), separators=(",", ":"))
