"""The SCIM filter lexer (RFC 7644 §3.4.2.2): scim2-filter-parser's, with its 0.7 defects fixed.

Subclassed, not forked (see app.scim.filter_parser for the parser):

- NUMBER is a single digit (``10``, ``-1``, ``1.5`` fail); a string ends at the first quote
  and keeps escapes raw (``"a \\"b\\""`` fails, ``\\u004a`` stays six characters);
  ``true``, ``false`` and ``null`` are matched inside names (``nullable pr`` fails). After a
  comparison operator, values are lexed in a state of their own (ValueLexer) as JSON
  (RFC 7159), plus the unquoted words Entra ID sends (issue 5), keeping whether they were
  quoted, which the library's tree forgets (``"true"`` and ``true`` look the same there).
- ``urn:a::b`` lost both trailing colons of its URN.
- Spaces are accepted inside paths (``name .givenName``, ``emails [type eq "x"]``), and
  ``emails.value[...]`` is later indistinguishable from ``emails[...].value``: checked_tokens
  refuses both, pairs brackets, and bounds nesting and size while the text is lexed.
- A bad character is a bare ValueError: here invalidFilter with its position.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, NamedTuple

from scim2_filter_parser.lexer import SCIMLexer
from sly import Lexer

from app.json_input import JsonInputError, check_strings
from app.scim.filter_ast import Value, invalid

# Parentheses and brackets. It bounds the tree the translation recurses into, and the SQL:
# SQLite's parser has a fixed stack of 100 entries (YYSTACKDEPTH in the system libraries),
# which `not (a or not (b or ...))` on custom extension attributes overflowed at 13 levels
# in a root search ("parser stack overflow", a 500, where PostgreSQL answered). Every shape
# at this depth fits (tests/scim/test_filter_depth.py); real filters nest two or three.
MAX_DEPTH = 10
MAX_TERMS = 100  # attribute expressions; a longer and/or chain would too
COMPARE_TOKENS = frozenset({"EQ", "NE", "CO", "SW", "EW", "GT", "GE", "LT", "LE"})
_KEYWORDS = {"and": "AND", "or": "OR", "not": "NOT", "pr": "PR"} | {
    op.lower(): op for op in COMPARE_TOKENS}
OPERATOR_TOKENS = frozenset(_KEYWORDS.values())
# Module constants used in lexer class bodies start with "_": SLY reads UPPERCASE names there
# as token names.
_STRING = r'"(?:[^"\\]|\\.)*"'
_END = r"(?=[\s()\[\]]|$)"  # where a bare value ends
_WRONG_QUOTES = frozenset("'\u2018\u2019\u201c\u201d`")  # the apostrophe, curly quotes, backtick
SPLIT_STRINGS = re.compile(f"({_STRING})")
_NEEDS_JSON = re.compile(r"[\x00-\x1f\\]")  # control characters and escapes
_JSON_LITERALS: dict[str, Value] = {"true": True, "false": False, "null": None}


class LiteralValue(NamedTuple):
    """A compValue token: its value, and its text when it was not a quoted string."""

    value: Value
    raw: str | None


def decode_string(text: str) -> str:
    """A quoted string token as JSON (RFC 7159 §7): escapes decoded, raw controls refused."""
    try:
        value = json.loads(text)
    except ValueError:
        raise invalid(f"Invalid string {text[:40]}: only JSON escapes (\\\" \\\\ \\/ \\b \\f "
                      f"\\n \\r \\t \\uXXXX) are allowed, control characters must be "
                      f"escaped") from None
    try:
        check_strings(value)
    except JsonInputError:
        # \u0000 or an unpaired surrogate: neither can be stored, so neither can be matched.
        raise invalid(f"Invalid string {text[:40]}: \\u0000 and unpaired surrogates "
                      "(\\ud800-\\udfff alone) are not text Roster stores") from None
    return value


def quick_decode(text: str) -> str:
    """``decode_string``, skipping the JSON parser for the usual string without escapes."""
    return decode_string(text) if _NEEDS_JSON.search(text) else text[1:-1]


class ValueLexer(Lexer):
    """The lexer state after a comparison operator: exactly one compValue, then back."""

    tokens = SCIMLexer.tokens | {"WORD"}
    ignore = ""
    ignore_space = r"[ \t\r\n]+"  # a run at once: filters may pad with many spaces

    @_(_STRING)  # noqa: F821
    def COMP_VALUE(self, t: Any) -> Any:
        t.value = LiteralValue(decode_string(t.value), None)
        self.pop_state()
        return t

    @_(r"(?:true|false|null)" + _END)  # noqa: F821
    def TRUE(self, t: Any) -> Any:
        t.type = t.value.upper()
        t.value = LiteralValue(_JSON_LITERALS[t.value], t.value)
        self.pop_state()
        return t

    @_(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?" + _END)  # noqa: F821
    def NUMBER(self, t: Any) -> Any:
        text = t.value
        try:
            number = float(text) if any(c in text for c in ".eE") else int(text)
        except ValueError:  # more digits than int() converts (sys.get_int_max_str_digits)
            raise invalid(f"The number {text[:20]}... has too many digits") from None
        t.value = LiteralValue(number, text)
        self.pop_state()
        return t

    @_(r'[^\s()\[\]"]+')  # noqa: F821
    def WORD(self, t: Any) -> Any:
        if t.value[0] in _WRONG_QUOTES:
            # `userName eq 'ada'` would look for the quotes too and find nobody, and an IdP
            # that finds nobody creates a duplicate: strings take the double quote only.
            raise invalid(f"Strings in a filter are quoted with \" (RFC 7644 §3.4.2.2), "
                          f"not {t.value[0]}: {t.value[:40]}")
        keyword = _KEYWORDS.get(t.value.lower())
        if keyword is not None:  # `userName eq and`: no value; the parser says so
            t.type = keyword
        else:  # Entra ID sends `externalId eq abc` and bare GUIDs (issue 5): a string
            t.value = LiteralValue(t.value, t.value)
        self.pop_state()
        return t

    def error(self, t: Any) -> None:
        """No value here (a bracket, an unclosed quote): the main lexer takes over."""
        self.pop_state()


class FilterLexer(SCIMLexer):
    """scim2-filter-parser's lexer; values are left to ValueLexer."""

    tokens = SCIMLexer.tokens | {"WORD"}
    ignore = ""
    ignore_space = r"[ \t\r\n]+"  # a run at once: filters may pad with many spaces
    # Only ValueLexer produces these: in names they matched prefixes (`nullable`, `true1`).
    del FALSE, TRUE, NULL, NUMBER  # noqa: F821

    @_(_STRING)  # noqa: F821
    def COMP_VALUE(self, t: Any) -> Any:
        t.value = LiteralValue(decode_string(t.value), None)
        return t

    @_(SCIMLexer.SCHEMA_URI.pattern)  # noqa: F821
    def SCHEMA_URI(self, t: Any) -> Any:
        t.value = t.value[:-1]  # the library strips every trailing ':', so `urn:a::b` lost one
        return t

    def tokenize(self, text: str, lineno: int = 1, index: int = 0) -> Iterator[Any]:
        """The library's tokens; a comparison operator switches to ValueLexer."""
        for tok in super().tokenize(text, lineno, index):
            if tok.type in COMPARE_TOKENS:
                self.push_state(ValueLexer)
            yield tok

    def error(self, t: Any) -> None:
        """Refuse the character (RFC 7644 §3.4.2.2 invalidFilter)."""
        char = t.value[0]
        hint = ": a string value is missing its closing quote" if char == '"' else ""
        raise invalid(f"Unexpected character {char!r} at position {self.index + 1} of the "
                      f"filter{hint}")


_BARE = frozenset({"WORD", "NUMBER", "TRUE", "FALSE", "NULL"})
_GLUED = {"SUBATTR": "'.' of a sub-attribute", "LBRACKET": "'['", "ATTRNAME": "the name"}


def checked_tokens(tokens: Iterator[Any], text: str, opens: list[Any]) -> Iterator[Any]:
    """Refuse what the library's grammar lets through, and bound the size, while lexing."""
    terms = 0
    prev: Any = None
    for tok in tokens:
        kind = tok.type
        if kind in ("LPAREN", "LBRACKET"):
            opens.append(tok)
            if len(opens) > MAX_DEPTH:
                raise invalid(f"The filter nests deeper than {MAX_DEPTH} levels")
        elif kind in ("RPAREN", "RBRACKET"):
            _close(tok, opens)
        elif kind == "SCHEMA_URI" or (kind == "ATTRNAME" and
                                      (prev is None or prev.type != "SCHEMA_URI")):
            terms += 1
            if terms > MAX_TERMS:
                raise invalid(f"The filter has more than {MAX_TERMS} attribute expressions")
        if prev is not None and prev.end != tok.index and kind in _GLUED and (
                kind != "ATTRNAME" or prev.type == "SCHEMA_URI") and (
                kind != "LBRACKET" or prev.type in ("ATTRNAME", "SUBATTR")):
            raise invalid(f"No space is allowed before {_GLUED[kind]} in an attribute path "
                          f"({text[prev.index:tok.end]!r})")
        if kind in _BARE and prev is not None and prev.end == tok.index:  # `eq\\x`, `eq.5`
            raise invalid(f"Expected a space between {text[prev.index:prev.end]!r} and the "
                          f"value {text[tok.index:tok.end]!r}")
        if kind == "LBRACKET" and prev is not None and prev.type == "SUBATTR":
            raise invalid(f"A value filter applies to an attribute, not to the sub-attribute "
                          f"{prev.value!r} ({text[prev.index:tok.end]!r})")
        prev = tok
        yield tok


def _close(tok: Any, opens: list[Any]) -> None:
    """Pair ``)`` with ``(`` and ``]`` with ``[``; the grammar alone reports this poorly."""
    opener = "(" if tok.type == "RPAREN" else "["
    if not opens:
        raise invalid(f"Unexpected {tok.value!r} at position {tok.index + 1}: no {opener!r} "
                      f"is open")
    if opens[-1].value != opener:
        raise invalid(f"Unexpected {tok.value!r} at position {tok.index + 1}: the "
                      f"{opens[-1].value!r} at position {opens[-1].index + 1} is still open")
    opens.pop()
