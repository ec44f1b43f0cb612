"""SCIM filters parsed by scim2-filter-parser (RFC 7644 §3.4.2.2), its 0.7 defects corrected.

The library's SLY LALR(1) parser is subclassed, not forked, fed by the corrected lexer of
app.scim.filter_lexer, and the tree it builds is converted to app.scim.filter_ast. What the
parser subclass corrects (each case is in tests/scim/test_filter_parser.py):

- ``and`` and ``or`` share one precedence level, so ``a or b and c`` parsed as
  ``(a or b) and c``. Here ``or`` < ``and`` < ``not``, the order §3.4.2.2 prescribes.
- Errors are "Parsing error at: Token(...)"; here invalidFilter says what was expected where,
  from the parser's own LALR table.
- ``emails[type eq "x"] eq "y"`` (no sub-attribute after the brackets) and nested brackets are
  accepted by the grammar; refused when converting.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from scim2_filter_parser import ast as lib
from scim2_filter_parser.parser import SCIMParser, SCIMParserError

from app.scim import dialect as notes_
from app.scim.errors import ScimError
from app.scim.filter_ast import Compare, Logical, Node, Not, Path, Present, ValuePath, invalid
from app.scim.filter_lexer import (
    COMPARE_TOKENS,
    OPERATOR_TOKENS,
    SPLIT_STRINGS,
    FilterLexer,
    LiteralValue,
    checked_tokens,
    quick_decode,
)


class _Parser(SCIMParser):
    """scim2-filter-parser's grammar with §3.4.2.2 precedence: or < and < not."""

    tokens = FilterLexer.tokens
    precedence = (("left", "OR"), ("left", "AND"), ("right", "NOT"))
    track_positions = False  # positions come from the tokens; this would cost per reduction

    filter = SCIMParser.filter
    value_path = SCIMParser.value_path
    attr_exp = SCIMParser.attr_exp
    log_exp = SCIMParser.log_exp
    attr_path = SCIMParser.attr_path
    sub_attr = SCIMParser.sub_attr

    @_("FALSE", "NULL", "TRUE", "NUMBER", "COMP_VALUE", "WORD")  # noqa: F821
    def comp_value(self, p: Any) -> lib.CompValue:
        return lib.CompValue(p[0])

    def __init__(self, text: str, opens: list[Any]) -> None:
        self.text = text
        self.opens = opens  # the '(' and '[' tokens open before the lookahead token

    def error(self, token: Any) -> None:
        """Say what was expected at the failing token (RFC 7644 §3.4.2.2 invalidFilter)."""
        raise invalid(_expected(self, token))


def _expected(parser: _Parser, token: Any) -> str:
    """What the LALR table would have accepted where ``token`` failed, in words."""
    expected = set(parser._lrtable.lr_action[parser.state])  # SLY has no public accessor
    if token is None:
        found = found_op = "the end of the filter"
    else:
        found = f"{parser.text[token.index:token.end]!r} at position {token.index + 1}"
        found_op = f"the operator {found}" if token.type in OPERATOR_TOKENS else found
    top = parser.symstack[-1]
    if top.type == "NOT":
        return f"The 'not' operator must be followed by '(' but found {found}"
    if expected & {"AND", "OR"}:  # an expression is complete; say what is still open
        opens = parser.opens
        if token is not None and token.type in ("LPAREN", "LBRACKET"):
            opens = opens[:-1]
        if not opens:
            return f"Unexpected {found} after a complete filter expression"
        opener = opens[-1]
        closing = f"to close the {opener.value!r} at position {opener.index + 1}"
        closer = ")" if opener.type == "LPAREN" else "]"
        if token is None:
            return f"Expected {closer!r} {closing} but found the end of the filter"
        return f"Expected 'and', 'or' or {closer!r} ({closing}) but found {found}"
    if expected & COMPARE_TOKENS:
        return (f"Expected an operator (eq ne co sw ew gt ge lt le pr) after "
                f"{_written(parser)!r} but found {found_op}")
    if "COMP_VALUE" in expected:
        return (f"Expected a value (a \"string\", number, true, false or null) after "
                f"'{_written(parser, 1)} {top.value}' but found {found_op}")
    if "ATTRNAME" in expected and top.type == "SCHEMA_URI":
        return (f"Expected an attribute name right after the schema URN {top.value + ':'!r} "
                f"(<urn>:<attribute>) but found {found_op}")
    if "ATTRNAME" in expected:
        return f"Expected an attribute name, '(' or 'not (' but found {found_op}"
    return f"Unexpected {found}"  # pragma: no cover - every state is named above


def _written(parser: _Parser, skip: int = 0) -> str:
    """The attribute path that ends ``skip`` symbols below the top of the parser's stack."""
    stack = parser.symstack[:len(parser.symstack) - skip]
    if stack[-1].type == "attr_path":
        return _path_text(stack[-1].value)
    first = len(stack) - 1
    while first > 1 and stack[first - 1].type in ("SCHEMA_URI", "ATTRNAME", "SUBATTR"):
        first -= 1
    written = parser.text[stack[first].index:stack[-1].end]
    if stack[first - 1].type == "value_path":
        return _path_text(stack[first - 1].value) + written
    return written


def _path_text(path: Any) -> str:
    """An attribute path of the library's tree as written (RFC 7644 §3.10)."""
    if isinstance(path, lib.Filter):  # a value path; the library moved a `.sub` after it inside
        namespace = path.namespace
        base = _path_text(lib.AttrPath(namespace.attr_name, None, namespace.uri))
        return f"{base}[...]" + (f".{namespace.sub_attr.value}" if namespace.sub_attr else "")
    name = path.attr_name
    if isinstance(name, lib.Filter):
        return _path_text(name)
    text = f"{path.uri}:{name}" if path.uri else name
    return f"{text}.{path.sub_attr.value}" if path.sub_attr else text


def _path(path: Any) -> Path:
    text = _path_text(path)
    return Path(path.uri, path.attr_name, path.sub_attr.value if path.sub_attr else None, text)


class _Converter:
    """The library's tree as app.scim.filter_ast nodes; counts the unquoted values."""

    def __init__(self) -> None:
        self.unquoted = 0

    def node(self, node: Any, inside: Path | None = None) -> Node:
        if isinstance(node, lib.LogExpr):
            op = "and" if node.op.lower() == "and" else "or"
            return Logical(op, self.node(node.expr1, inside), self.node(node.expr2, inside))
        if isinstance(node, lib.AttrExpr):
            return self.attr_expr(node, inside)
        if node.namespace is None:  # parentheses, `not (...)` or the whole filter
            inner = self.node(node.expr, inside)
            return Not(inner) if node.negated else inner
        path = self.value_path_base(node, inside)  # `name.givenName[` is refused by checked_tokens
        return ValuePath(path, self.node(node.expr, path))

    def value_path_base(self, node: Any, inside: Path | None) -> Path:
        """The attribute before ``[`` of a value path; brackets do not nest (§3.4.2.2)."""
        namespace = node.namespace
        if inside is not None or isinstance(namespace.attr_name, lib.Filter):
            outer = inside.text if inside is not None else _path_text(namespace)
            raise invalid(f"Nested value filters are not allowed: {outer}[...]")
        return _path(namespace)

    def attr_expr(self, node: Any, inside: Path | None) -> Compare | Present | ValuePath:
        op = node.value.lower()
        path = node.attr_path
        if not isinstance(path.attr_name, lib.Filter):
            return self.leaf(_path(path), op, node.comp_value)
        # `emails[type eq "work"].value eq "x"`: the library moved `.value` into the namespace.
        value_path = path.attr_name
        sub_path = self.value_path_base(value_path, inside)
        if sub_path.sub is None:
            raise invalid(f"Unexpected {node.value!r} after {sub_path.text}[...]: compare a "
                          f"sub-attribute, e.g. {sub_path.text}[...].value {op} ...")
        base = Path(sub_path.urn, sub_path.attr, None, sub_path.text.rpartition(".")[0])
        then = self.leaf(sub_path, op, node.comp_value)
        return ValuePath(base, self.node(value_path.expr, base), then)

    def leaf(self, path: Path, op: str, comp_value: Any) -> Compare | Present:
        if op == "pr":
            return Present(path)
        literal: LiteralValue = comp_value.value
        if literal.raw is not None and isinstance(literal.value, str):
            self.unquoted += 1
        return Compare(path, op, literal.value, literal.raw)


def _parse(text: str) -> tuple[Node, int]:
    """Lex, parse and convert one filter; the count of unquoted values for the notes."""
    opens: list[Any] = []
    tokens = checked_tokens(FilterLexer().tokenize(text), text, opens)
    try:
        tree = _Parser(text, opens).parse(tokens)
    except SCIMParserError:  # pragma: no cover - its attr_path rule; checked_tokens precedes it
        raise invalid("A value path may have one sub-attribute after ']'") from None
    converter = _Converter()
    return converter.node(tree), converter.unquoted


@lru_cache(maxsize=512)
def _parse_shape(shape: str) -> tuple[Node, int]:
    return _parse(shape)


def _fill(node: Node, strings: Iterator[str]) -> Node:
    """The shape's tree with its quoted values, in textual order, put back."""
    if isinstance(node, Compare):
        return node if node.raw is not None else Compare(node.path, node.op, next(strings))
    if isinstance(node, Logical):
        return Logical(node.op, _fill(node.left, strings), _fill(node.right, strings))
    if isinstance(node, Not):
        return Not(_fill(node.expr, strings))
    if isinstance(node, ValuePath):
        inner = _fill(node.filter, strings)
        then = _fill(node.then, strings) if node.then is not None else None
        return ValuePath(node.path, inner, then)
    return node


def parse_filter(text: str, *, notes: list[str] | None = None) -> Node:
    """Parse a SCIM filter into a tree (RFC 7644 §3.4.2.2); bad syntax is invalidFilter.

    Parsed once per shape: the quoted values are cut out (``userName eq ""``), the shape's
    tree is cached, and the values are put back, so lookups by userName or externalId
    reuse one parse. Errors are reported from the text as sent, positions included.
    """
    if not text.strip():
        raise invalid("The filter is empty")
    parts = SPLIT_STRINGS.split(text)
    quoted = parts[1::2]
    shape = '""'.join(parts[::2]) if quoted else text
    if len(shape) > 4096:  # bounds what the cache holds (512 shapes); longer ones are rare
        tree, unquoted = _parse(text)
    else:
        try:
            tree, unquoted = _parse_shape(shape)
        except ScimError:
            _parse(text)  # the same error, with positions in the text as sent
            raise
        if quoted:
            strings = iter([quick_decode(q) for q in quoted])
            try:
                tree = _fill(tree, strings)
            except StopIteration:  # pragma: no cover - the shape lexes strings as the text does
                tree, unquoted = _parse(text)
    if notes is not None:
        notes.extend([notes_.UNQUOTED_FILTER_VALUE] * unquoted)
    return tree
