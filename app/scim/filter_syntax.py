"""SCIM filter syntax (RFC 7644 §3.4.2.2) and attribute paths (RFC 7644 §3.10), without SQL.

A small recursive-descent parser rather than scim2-filter-parser's AST, because that parser
(0.7) gives ``and`` and ``or`` the same precedence (``a or b and c`` becomes
``(a or b) and c``), only lexes one-digit numbers, has no string escapes and cannot accept
the unquoted values Entra ID sends. The grammar here is the RFC's ABNF with one tolerance:
an unquoted word in value position is read as a string and noted (issue 5).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal

from app.scim import dialect as notes_
from app.scim.errors import ScimError
from app.scim.schema import (
    COMMON,
    ENTERPRISE,
    GROUP,
    ROSTER_ACCESS,
    USER,
    Attribute,
    Schema,
)

Resource = Literal["User", "Group"]
Value = str | bool | int | float | None

MAX_DEPTH = 50  # parentheses and "not" levels; deeper input would exhaust the stack
MAX_TERMS = 100  # attribute expressions; a longer and/or chain would too, when translated
COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<punct>[()\[\]])|(?P<word>[^\s()\[\]"]+))')
_SPACE = re.compile(r"\s*")
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NAME = re.compile(r"[A-Za-z$][\w$-]*")


@dataclass(frozen=True)
class Path:
    """An attribute path as written: optional schema URN, attribute, optional sub-attribute."""

    urn: str | None
    attr: str
    sub: str | None
    text: str


@dataclass(frozen=True)
class Compare:
    """``path op value`` (attrExp)."""

    path: Path
    op: str
    value: Value
    raw: str | None = None  # the token as written, when the value was not a quoted string


@dataclass(frozen=True)
class Present:
    """``path pr``."""

    path: Path


@dataclass(frozen=True)
class Logical:
    """``left and right`` / ``left or right``."""

    op: Literal["and", "or"]
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    """``not (filter)``."""

    expr: Node


@dataclass(frozen=True)
class ValuePath:
    """``attr[filter]``, optionally followed by ``.sub op value`` (an Entra extension)."""

    path: Path
    filter: Node
    then: Compare | Present | None = None


Node = Compare | Present | Logical | Not | ValuePath


def invalid(detail: str) -> ScimError:
    """The 400 invalidFilter error (RFC 7644 §3.4.2.2, Table 9)."""
    return ScimError(400, detail, "invalidFilter")


@dataclass(frozen=True)
class _Tok:
    kind: str  # str punct word end
    text: str
    start: int
    end: int


def _tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = _SPACE.match(text).end()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise invalid(f"Unexpected character {text[pos:].lstrip()[:1]!r} in filter "
                          f"at position {pos + 1}; is a string value missing a quote?")
        kind = m.lastgroup or "word"
        tokens.append(_Tok(kind, m.group(kind), m.start(kind), m.end()))
        pos = _SPACE.match(text, m.end()).end()
    tokens.append(_Tok("end", "", len(text), len(text)))
    return tokens


class _Parser:
    """FILTER = attrExp / logExp / valuePath / *1"not" "(" FILTER ")" (RFC 7644 Figure 1)."""

    def __init__(self, text: str, notes: list[str] | None) -> None:
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0
        self.terms = 0
        self.notes = notes

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def keyword(self, *words: str) -> str | None:
        tok = self.peek()
        if tok.kind == "word" and tok.text.lower() in words:
            self.i += 1
            return tok.text.lower()
        return None

    def expect(self, punct: str, context: str) -> _Tok:
        tok = self.take()
        if tok.kind != "punct" or tok.text != punct:
            raise invalid(f"Expected {punct!r} {context} but found {_describe(tok)}")
        return tok

    def parse(self) -> Node:
        node = self.or_expr(in_brackets=False)
        tok = self.peek()
        if tok.kind != "end":
            raise invalid(f"Unexpected {_describe(tok)} after a complete filter expression")
        return node

    def or_expr(self, *, in_brackets: bool) -> Node:
        node = self.and_expr(in_brackets=in_brackets)
        while self.keyword("or"):
            node = Logical("or", node, self.and_expr(in_brackets=in_brackets))
        return node

    def and_expr(self, *, in_brackets: bool) -> Node:
        node = self.unary(in_brackets=in_brackets)
        while self.keyword("and"):
            node = Logical("and", node, self.unary(in_brackets=in_brackets))
        return node

    def unary(self, *, in_brackets: bool) -> Node:
        self.depth += 1
        try:
            return self._unary(in_brackets=in_brackets)
        finally:
            self.depth -= 1

    def _unary(self, *, in_brackets: bool) -> Node:
        if self.depth > MAX_DEPTH:
            raise invalid(f"The filter nests deeper than {MAX_DEPTH} levels")
        tok = self.peek()
        if tok.kind == "word" and tok.text.lower() == "not" and self._next_is("("):
            self.take()
            self.take()
            inner = self.or_expr(in_brackets=in_brackets)
            self.expect(")", "to close 'not ('")
            return Not(inner)
        if tok.kind == "punct" and tok.text == "(":
            self.take()
            inner = self.or_expr(in_brackets=in_brackets)
            self.expect(")", "to close '('")
            return inner
        return self.attr_expr(in_brackets=in_brackets)

    def _next_is(self, punct: str) -> bool:
        tok = self.toks[self.i + 1]
        return tok.kind == "punct" and tok.text == punct

    def attr_expr(self, *, in_brackets: bool) -> Node:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise invalid(f"The filter has more than {MAX_TERMS} attribute expressions")
        tok = self.take()
        if tok.kind != "word":
            raise invalid(f"Expected an attribute name but found {_describe(tok)}")
        path = parse_path(tok.text)
        nxt = self.peek()
        if nxt.kind == "punct" and nxt.text == "[" and nxt.start == tok.end:
            if in_brackets:
                raise invalid(f"Nested value filters are not allowed: {tok.text}[...]")
            if path.sub is not None:
                raise invalid(f"A value filter applies to an attribute, not to {path.text!r}")
            self.take()
            inner = self.or_expr(in_brackets=True)
            close = self.expect("]", f"to close '{tok.text}['")
            after = self.peek()
            if after.kind == "word" and after.text.startswith(".") and after.start == close.end:
                self.take()
                sub = after.text[1:]
                if not _NAME.fullmatch(sub):
                    raise invalid(f"Invalid sub-attribute name {after.text!r}")
                sub_path = Path(path.urn, path.attr, sub, f"{path.text}.{sub}")
                then = self.operation(sub_path)
                return ValuePath(path, inner, then)
            return ValuePath(path, inner)
        return self.operation(path)

    def operation(self, path: Path) -> Compare | Present:
        tok = self.take()
        op = tok.text.lower() if tok.kind == "word" else ""
        if op == "pr":
            return Present(path)
        if op not in COMPARE_OPS:
            raise invalid(f"Expected an operator (eq ne co sw ew gt ge lt le pr) after "
                          f"{path.text!r} but found {_describe(tok)}")
        value, raw = self.value(path, op)
        return Compare(path, op, value, raw)

    def value(self, path: Path, op: str) -> tuple[Value, str | None]:
        tok = self.take()
        if tok.kind == "str":
            try:
                return json.loads(tok.text), None
            except ValueError:
                raise invalid(f"Invalid string escape in {tok.text}") from None
        if tok.kind != "word":
            raise invalid(f"Expected a value after '{path.text} {op}' but found "
                          f"{_describe(tok)}")
        literal = {"true": True, "false": False, "null": None}
        if tok.text in literal:
            return literal[tok.text], tok.text
        if _NUMBER.fullmatch(tok.text):
            number = float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
            return number, tok.text
        if tok.text.lower() in COMPARE_OPS | {"and", "or", "not", "pr"}:
            raise invalid(f"Expected a value after '{path.text} {op}' but found "
                          f"{_describe(tok)}")
        # Entra ID sends `externalId eq abc` and unquoted GUIDs (issue 5): read as a string.
        if self.notes is not None:
            self.notes.append(notes_.UNQUOTED_FILTER_VALUE)
        return tok.text, tok.text


def _describe(tok: _Tok) -> str:
    return "the end of the filter" if tok.kind == "end" else f"{tok.text!r}"


def parse_filter(text: str, *, notes: list[str] | None = None) -> Node:
    """Parse a SCIM filter into a tree (RFC 7644 §3.4.2.2); bad syntax is invalidFilter."""
    if not text.strip():
        raise invalid("The filter is empty")
    return _Parser(text, notes).parse()


def parse_path(text: str) -> Path:
    """Split ``[urn:]attr[.sub]`` (RFC 7644 §3.10) without checking the schema."""
    urn: str | None = None
    rest = text
    if ":" in text:
        urn, _, rest = text.rpartition(":")
    attr, _, sub = rest.partition(".")
    if not _NAME.fullmatch(attr) or (sub and not _NAME.fullmatch(sub)) or urn == "":
        raise invalid(f"Invalid attribute path {text!r}")
    return Path(urn, attr, sub or None, text)


@dataclass(frozen=True)
class Resolved:
    """An attribute path checked against the schemas: the definitions and canonical names."""

    schema: Schema | None  # None for the common attributes id, externalId, meta
    attr: Attribute
    sub: Attribute | None

    @property
    def name(self) -> str:
        """The canonical dotted name, e.g. ``name.givenName`` or ``manager.value``."""
        return f"{self.attr.name}.{self.sub.name}" if self.sub else self.attr.name

    @property
    def leaf(self) -> Attribute:
        """The attribute compared: the sub-attribute when there is one."""
        return self.sub or self.attr


_SCHEMAS: dict[Resource, tuple[Schema, ...]] = {
    "User": (USER, ENTERPRISE, ROSTER_ACCESS),
    "Group": (GROUP,),
}


def resolve_path(path: Path, resource: Resource, *, notes: list[str] | None = None,
                 scim_type: str = "invalidFilter") -> Resolved:
    """Find a path's definitions, case-insensitively (RFC 7643 §2.1); note capitalisation."""
    schemas = _SCHEMAS[resource]
    if path.urn is not None:
        schema = next((s for s in schemas if s.id.lower() == path.urn.lower()), None)
        if schema is None:
            raise ScimError(400, f"Unknown schema {path.urn!r} in {path.text!r} for "
                                 f"{resource} resources", scim_type)
        candidates: list[tuple[Schema | None, Attribute]] = [
            (schema, a) for a in schema.attributes if a.name.lower() == path.attr.lower()]
        if schema is schemas[0]:
            candidates += [(None, a) for a in COMMON if a.name.lower() == path.attr.lower()]
    else:
        # Unqualified names resolve in the core schema first, then the extensions.
        candidates = [(None, a) for a in COMMON if a.name.lower() == path.attr.lower()]
        for schema in schemas:
            candidates += [(schema, a) for a in schema.attributes
                           if a.name.lower() == path.attr.lower()]
    if not candidates:
        raise ScimError(400, f"Unknown attribute {path.text!r} for {resource} resources",
                        scim_type)
    schema_found, attr = candidates[0]
    sub = None
    if path.sub is not None:
        sub = attr.sub(path.sub)
        if sub is None:
            raise ScimError(400, f"Unknown sub-attribute {path.text!r}: {attr.name} has "
                                 f"{', '.join(a.name for a in attr.sub_attributes) or 'none'}",
                            scim_type)
    if notes is not None and (attr.name != path.attr or (sub and sub.name != path.sub)):
        notes.append(notes_.CAPITALISED_ATTRIBUTE)
    return Resolved(schema_found, attr, sub)


def resolve_attribute(text: str, resource: Resource, *, notes: list[str] | None = None,
                      scim_type: str = "invalidFilter") -> Resolved:
    """Resolve an attribute path string (RFC 7644 §3.10) for ``attributes``, sortBy, filters."""
    try:
        path = parse_path(text.strip())
    except ScimError as exc:
        raise ScimError(400, exc.detail, scim_type) from None
    return resolve_path(path, resource, notes=notes, scim_type=scim_type)
