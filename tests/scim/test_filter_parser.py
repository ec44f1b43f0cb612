"""SCIM filter parsing (RFC 7644 §3.4.2.2) with scim2-filter-parser and our corrections.

Table-driven and pure, plus the same errors and precedence over real HTTP.
"""

from __future__ import annotations

import pytest
from scim2_filter_parser import ast as lib
from scim2_filter_parser.lexer import SCIMLexer
from scim2_filter_parser.parser import SCIMParser, SCIMParserError

from app.scim import dialect as notes_
from app.scim.errors import ScimError
from app.scim.filter_ast import Compare, Logical, Node, Not, Present, ValuePath
from app.scim.filter_parser import parse_filter
from tests.scim.support import Scim, assert_error, user_body

ENT = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def show(node: Node) -> str:
    """A compact rendering: (and L R), (or L R), (not X), path[filter], path op value."""
    if isinstance(node, Logical):
        return f"({node.op} {show(node.left)} {show(node.right)})"
    if isinstance(node, Not):
        return f"(not {show(node.expr)})"
    if isinstance(node, ValuePath):
        then = f" then {show(node.then)}" if node.then is not None else ""
        return f"{node.path.text}[{show(node.filter)}]{then}"
    if isinstance(node, Present):
        return f"{node.path.text} pr"
    return f"{node.path.text} {node.op} {node.value!r}"


PRECEDENCE = [
    # RFC 7644 §3.4.2.2: "not" before "and" before "or"; parentheses first.
    ("a pr or b pr and c pr", "(or a pr (and b pr c pr))"),
    ("a pr and b pr or c pr", "(or (and a pr b pr) c pr)"),
    ("a pr or b pr and c pr or d pr", "(or (or a pr (and b pr c pr)) d pr)"),
    ("a pr and b pr or c pr and d pr", "(or (and a pr b pr) (and c pr d pr))"),
    ("a pr or b pr or c pr", "(or (or a pr b pr) c pr)"),
    ("a pr and b pr and c pr", "(and (and a pr b pr) c pr)"),
    ("(a pr or b pr) and c pr", "(and (or a pr b pr) c pr)"),
    ("a pr and (b pr or c pr)", "(and a pr (or b pr c pr))"),
    ("not (a pr) and b pr", "(and (not a pr) b pr)"),
    ("not (a pr) or b pr and c pr", "(or (not a pr) (and b pr c pr))"),
    ("a pr or not (b pr) and c pr", "(or a pr (and (not b pr) c pr))"),
    ("not (a pr or b pr) and c pr", "(and (not (or a pr b pr)) c pr)"),
    ("not (not (a pr))", "(not (not a pr))"),
    ("a pr OR b pr AnD c pr", "(or a pr (and b pr c pr))"),
    ('emails[type eq "w" or primary eq true and value co "@x"]',
     "emails[(or type eq 'w' (and primary eq True value co '@x'))]"),
    ('emails[type eq "w"] or emails[type eq "h"] and userName pr',
     "(or emails[type eq 'w'] (and emails[type eq 'h'] userName pr))"),
]


@pytest.mark.parametrize(("text", "tree"), PRECEDENCE, ids=[c[0] for c in PRECEDENCE])
def test_and_binds_tighter_than_or_and_not_tightest(text, tree):
    """The library gives and/or one level; ours follows the RFC's order of operations."""
    assert show(parse_filter(text)) == tree


PARSED = [
    # Numbers: the library lexes one digit only.
    ("a eq 10", "a eq 10"),
    ("a eq -1", "a eq -1"),
    ("a eq 1.5", "a eq 1.5"),
    ("a eq 1e3", "a eq 1000.0"),
    ("a eq -0.5E-2", "a eq -0.005"),
    ("a gt 0 and b lt 99", "(and a gt 0 b lt 99)"),
    # Strings: the library ends them at the first quote and keeps escapes raw.
    ('a eq "say \\"hi\\""', "a eq 'say \"hi\"'"),
    ('a eq "Bob \\u004aones"', "a eq 'Bob Jones'"),
    ('a eq "back\\\\slash"', "a eq 'back\\\\slash'"),
    ('a eq "tab\\there"', "a eq 'tab\\there'"),
    ('a eq "x) or (y"', "a eq 'x) or (y'"),
    ('a eq "[x]"', "a eq '[x]'"),
    ('a eq ""', "a eq ''"),
    ('a eq "été"', "a eq 'été'"),
    # JSON literals keep their type; quoted ones stay strings.
    ("a eq true", "a eq True"),
    ("a eq false", "a eq False"),
    ("a eq null", "a eq None"),
    ('a eq "true"', "a eq 'true'"),
    ('a eq "null"', "a eq 'null'"),
    # Names beginning with a literal (the library lexed `null` + `able`).
    ("nullable pr", "nullable pr"),
    ('trueName eq "x"', "trueName eq 'x'"),
    ("falsehood pr", "falsehood pr"),
    # Operators and logical words in any case; names as written.
    ('userName Eq "x" AND active EQ true', "(and userName eq 'x' active eq True)"),
    ('UserName eQ "x"', "UserName eq 'x'"),
    ('a eq "x"and b pr', "(and a eq 'x' b pr)"),
    ('a eq"x"', "a eq 'x'"),
    # Attribute paths: URNs, sub-attributes, $ref.
    (f'{ENT}:department eq "R&D"', f"{ENT}:department eq 'R&D'"),
    (f'{ENT}:manager.value pr', f"{ENT}:manager.value pr"),
    ('urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "A"',
     "urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw 'A'"),
    ("urn:a::b pr", "urn:a::b pr"),
    ('groups.$ref eq "x"', "groups.$ref eq 'x'"),
    # Value filters and a sub-attribute after them (Entra).
    ('emails[type eq "work"]', "emails[type eq 'work']"),
    ('emails[type eq "work" and value co "@acme.com"]',
     "emails[(and type eq 'work' value co '@acme.com')]"),
    ('emails[not (type eq "work")]', "emails[(not type eq 'work')]"),
    ('emails[type eq "work"].value eq "x"', "emails[type eq 'work'] then emails.value eq 'x'"),
    ('emails[type eq "work"].value pr', "emails[type eq 'work'] then emails.value pr"),
    (f'{ENT}:manager[value eq "x"]', f"{ENT}:manager[value eq 'x']"),
    ('emails[type eq "work"] and not (emails[type eq "home"])',
     "(and emails[type eq 'work'] (not emails[type eq 'home']))"),
    # Dates are strings here; app.scim.filters reads them as xsd:dateTime.
    ('meta.created gt "2026-01-02T12:00:00Z"', "meta.created gt '2026-01-02T12:00:00Z'"),
    # Spaces: tabs and runs of spaces between tokens.
    ('  a\teq  "x"  ', "a eq 'x'"),
]


@pytest.mark.parametrize(("text", "tree"), PARSED, ids=[c[0] for c in PARSED])
def test_valid_filters_parse_to_the_expected_tree(text, tree):
    """Values, literals, names and paths the library gets wrong parse as the RFC says."""
    assert show(parse_filter(text)) == tree


UNQUOTED = [
    ("externalId eq ext-A1", "ext-A1"),
    ("userName eq 0e4b8f6a-3c1d-4c55-9a7d-1b2c3d4e5f60", "0e4b8f6a-3c1d-4c55-9a7d-1b2c3d4e5f60"),
    ("userName eq alice@acme.com", "alice@acme.com"),
    ("externalId eq urn:x:y", "urn:x:y"),
    ("displayName eq True", "True"),
    ("a eq 01", "01"),
]


@pytest.mark.parametrize(("text", "value"), UNQUOTED, ids=[c[0] for c in UNQUOTED])
def test_unquoted_words_are_strings_and_noted(text, value):
    """Entra's unquoted values (issue 5) are read as strings and noted for the dialect."""
    notes: list[str] = []
    node = parse_filter(text, notes=notes)
    assert isinstance(node, Compare)
    assert (node.value, node.raw) == (value, value)
    assert notes == [notes_.UNQUOTED_FILTER_VALUE]


def test_numbers_keep_their_text_for_string_attributes():
    """A bare number keeps the text as sent, so employeeNumber eq 0042 is not 42."""
    node = parse_filter("employeeNumber eq 1001")
    assert isinstance(node, Compare)
    assert (node.value, node.raw) == (1001, "1001")


REFUSED = [
    # The library accepts these; the RFC grammar has no spaces inside a path.
    ('emails [type eq "work"]', "No space"),
    ('emails[type eq "work"] .value eq "x"', "No space"),
    ('name .givenName eq "x"', "No space"),
    (f'{ENT}: department eq "x"', "No space"),
    ("userName eq\\x", "space between"),
    # ...and reads `emails.value[...]` as `emails[...].value`.
    ('emails.value[type eq "work"] eq "x"', "not to the sub-attribute"),
    ('name.givenName[x eq "y"]', "not to the sub-attribute"),
    ('emails[type eq "work"] eq "x"', "compare a sub-attribute"),
    ('emails[value[type eq "x"]]', "Nested"),
    ('emails[type eq "a"][value eq "b"]', "Nested"),
    # Errors the library reports as a bare ValueError or "Parsing error at: Token(...)".
    ('a eq "x" & b', "Unexpected character '&' at position 10"),
    ('userName eq "x', "closing quote"),
    ('a eq "bad \\q"', "escape"),
    ('a eq "raw\ttab"', "escape"),
    ("userName", "Expected an operator"),
    ('userName regex "x"', "after 'userName' but found 'regex' at position 10"),
    ("userName eq", "Expected a value"),
    ("userName eq and", "Expected a value"),
    ('userName eq "a" and', "Expected an attribute name"),
    ('userName eq "a" or eq "b"', "the operator 'eq'"),
    ('not userName eq "a"', "'not' operator must be followed by '('"),
    ('(userName eq "a"', "Expected ')' to close the '(' at position 1"),
    ('(a pr c', "Expected 'and', 'or' or ')'"),
    ('emails[type eq "work"', "Expected ']' to close the '[' at position 7"),
    ('userName eq "a")', "no '(' is open"),
    ('(a pr]', "the '(' at position 1 is still open"),
    ('a pr "x"', "after a complete filter expression"),
    ("a eq 1 2", "Unexpected character '2'"),
    ("nam. pr", "Unexpected character '.'"),
    ("(" * 11 + "a pr" + ")" * 11, "deeper than 10"),
    (" or ".join(["a pr"] * 101), "more than 100"),
    ("a eq " + "9" * 5000, "too many digits"),
]


@pytest.mark.parametrize(("text", "fragment"), REFUSED, ids=[c[0][:50] for c in REFUSED])
def test_malformed_filters_are_invalid_filter_with_a_reason(text, fragment):
    """Every syntax error is 400 invalidFilter whose detail says what and where."""
    with pytest.raises(ScimError) as caught:
        parse_filter(text)
    assert (caught.value.status, caught.value.scim_type) == (400, "invalidFilter")
    assert fragment in caught.value.detail


def test_filters_of_one_shape_share_a_parse_but_keep_their_values():
    """userName lookups reuse one cached parse; each gets its own decoded value and notes."""
    first = parse_filter('userName eq "a@x.com" and externalId eq abc')
    notes: list[str] = []
    second = parse_filter('userName eq "b\\u0040x.com" and externalId eq abc', notes=notes)
    assert show(first) == "(and userName eq 'a@x.com' externalId eq 'abc')"
    assert show(second) == "(and userName eq 'b@x.com' externalId eq 'abc')"
    assert notes == [notes_.UNQUOTED_FILTER_VALUE]


def test_errors_point_into_the_filter_as_sent_not_its_cached_shape():
    """Positions count the quoted values as written, even though the shape drops them."""
    with pytest.raises(ScimError) as caught:
        parse_filter('userName eq "a long value here" & x')
    assert "position 33" in caught.value.detail
    with pytest.raises(ScimError) as caught:
        parse_filter('userName eq "ok" and title eq "bad \\q"')
    assert "escape" in caught.value.detail


def test_the_library_alone_still_needs_these_corrections():
    """scim2-filter-parser 0.7 unchanged: one precedence level, one-digit numbers.

    When an upgrade makes this fail, app.scim.filter_parser can shed the matching override.
    """
    tree = SCIMParser().parse(SCIMLexer().tokenize("a pr or b pr and c pr"))
    assert isinstance(tree.expr, lib.LogExpr)
    assert tree.expr.op == "and"  # (a or b) and c
    with pytest.raises(SCIMParserError, match="Parsing error"):
        SCIMParser().parse(SCIMLexer().tokenize("a eq 10"))


HTTP_ERRORS = [
    ('userName eq "x" & y', "Unexpected character '&' at position 17"),
    ('userName eq "x', "closing quote"),
    ('userName eq "a\\q"', "escape"),
    ("userName regex 1", "Expected an operator"),
    ('(userName eq "x"', "Expected ')'"),
]


@pytest.mark.parametrize(("text", "fragment"), HTTP_ERRORS, ids=[c[0] for c in HTTP_ERRORS])
def test_lexer_and_parser_errors_are_400_invalid_filter_over_http(client, tenant, text,
                                                                 fragment):
    """GET ?filter= and POST /.search answer a SCIM 400 invalidFilter, never a 500."""
    scim = Scim(client, tenant)
    body = assert_error(scim.get("/Users", query_string={"filter": text}), 400, "invalidFilter")
    assert fragment in body["detail"]
    search = {"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
              "filter": text}
    assert_error(scim.post("/Users/.search", search), 400, "invalidFilter")


def test_and_before_or_holds_end_to_end(client, tenant):
    """`a or b and c` lists a's user and not b's: and binds tighter (RFC 7644 §3.4.2.2)."""
    scim = Scim(client, tenant)
    for name, title in (("a@x.com", "A"), ("b@x.com", "B")):
        assert scim.post("/Users", user_body(name, title=title)).status_code == 201
    text = 'title eq "A" or title eq "B" and active eq false'
    listed = scim.get("/Users", query_string={"filter": text}).get_json()
    assert [r["userName"] for r in listed["Resources"]] == ["a@x.com"]


def test_a_filter_exactly_at_its_limits_is_answered(client, tenant):
    """10 levels of parentheses and 100 attribute expressions are allowed ("deeper than 10",
    "more than 100" say so); one more of either is the 400 above."""
    scim = Scim(client, tenant)
    assert scim.post("/Users", user_body("a@x.com")).status_code == 201
    for text in ("(" * 10 + 'userName eq "a@x.com"' + ")" * 10,
                 " or ".join(['userName eq "a@x.com"'] * 100)):
        listed = scim.get("/Users", query_string={"filter": text})
        assert listed.status_code == 200, listed.get_json()
        assert listed.get_json()["totalResults"] == 1


@pytest.mark.parametrize(("query", "scim_type"), [
    ('filter=userName eq "a@x.com"&filter=userName eq "b@x.com"', "invalidFilter"),
    ('filter=userName eq "a@x.com"&FILTER=userName eq "b@x.com"', "invalidFilter"),
    ("count=1&Count=2", "invalidValue"),
    ("attributes=userName&attributes=title", "invalidValue"),
])
def test_a_scim_query_parameter_given_twice_is_refused(client, tenant, query, scim_type):
    """RFC 7644 §3.4.2 has one of each: the second is not silently dropped."""
    scim = Scim(client, tenant)
    assert scim.post("/Users", user_body("a@x.com")).status_code == 201
    body = assert_error(scim.get("/Users?" + query.replace(" ", "%20")), 400, scim_type)
    assert "given more than once" in body["detail"]
    user_id = scim.get("/Users").get_json()["Resources"][0]["id"]
    assert_error(scim.get(f"/Users/{user_id}?attributes=userName&Attributes=title"), 400,
                 "invalidValue")
    assert scim.get("/Users?filter=userName%20eq%20%22a@x.com%22&foo=1&foo=2").status_code \
        == 200  # other names pass as sent
