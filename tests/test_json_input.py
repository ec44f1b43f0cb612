"""app/json_input.py: what a request body may hold, table-driven (pure, no app)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from app.json_input import MAX_DEPTH, JsonInputError, parse_json


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(("raw", "value"), [
    (b'{"a": [1, {"b": "c"}]}', {"a": [1, {"b": "c"}]}),
    (b"\xef\xbb\xbf[1]", [1]),  # a UTF-8 byte order mark is ignored
    (b'"\\ud83d\\ude00"', "\U0001F600"),  # a paired surrogate escape is a character
    ("\"Jos\u00e9\"".encode(), "Jos\u00e9"),
    (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, _nested(MAX_DEPTH)),  # exactly the limit
    (b'"' + b"\\u" + b'00e9"', "\u00e9"),
    (b"[1.5, -2e300, 1e-400]", [1.5, -2e300, 0.0]),  # in range, or underflowing to zero
    # Brackets inside strings do not nest (only those outside are counted).
    (b'["' + b"[" * 100 + b'", "\\"' + b"{" * 100 + b'"]',
     ["[" * 100, '"' + "{" * 100]),
    # Many brackets side by side are no depth: a group of 100 members.
    (b"[" + b",".join([b'{"value": "u"}'] * 100) + b"]", [{"value": "u"}] * 100),
    # The same name in different objects, or in another case, is not a repeat here.
    (b'{"a": {"a": 1}, "A": [{"a": 2}]}', {"a": {"a": 1}, "A": [{"a": 2}]}),
])
def test_accepted(raw, value):
    assert parse_json(raw) == value


@pytest.mark.parametrize(("raw", "syntax", "where", "detail"), [
    (b"{", True, "", "not valid JSON at line 1 column 2"),
    (b"\xff", True, "", "not valid UTF-8"),
    (b'"\xed\xa0\x80"', True, "", "not valid UTF-8"),  # a surrogate as UTF-8 bytes
    (b"[" * 100_000 + b"]" * 100_000, True, "", f"deeper than {MAX_DEPTH}"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), True, "", f"deeper than {MAX_DEPTH}"),
    (b'{"a": ' + b'{"b": ' * MAX_DEPTH + b"1" + b"}" * MAX_DEPTH + b"}", True, "",
     f"deeper than {MAX_DEPTH}"),
    (b"9" * 5000, True, "", "number too long"),
    (b'[{"a": 1, "b": 2, "a": 1}]', True, "", "gives the name 'a' twice in one object"),
    (b'{"a": ["x", "\\u0000"]}', False, "a.1", "a.1 contains a NUL"),
    (b'{"a\\u0000": 1}', False, "a\x00", "contains a NUL"),
    (b'{"a": {"b": "\\udfff"}}', False, "a.b", "a.b contains an unpaired UTF-16 surrogate"),
    (b'"\\ud800x"', False, "", "the body contains an unpaired"),
    # Not JSON (RFC 8259 §6), though Python's parser takes them: stored, they came back as
    # NaN or Infinity, and no strict client could read that response.
    (b'{"x": NaN}', True, "", "holds NaN"),
    (b'[Infinity]', True, "", "holds Infinity"),
    (b'[-Infinity]', True, "", "holds -Infinity"),
    (b'{"x": 1e400}', True, "", "number 1e400, too large"),
    (b'[-1.0e999]', True, "", "too large"),
])
def test_refused(raw, syntax, where, detail):
    with pytest.raises(JsonInputError) as caught:
        parse_json(raw)
    assert caught.value.syntax is syntax
    assert caught.value.where == where
    assert detail in caught.value.detail


@pytest.mark.parametrize(("raw", "value"), [
    (b'{"a": 0.1}', {"a": Decimal("0.1")}), (b"[1e400, 1234567.10, 3]",
                                              [Decimal("1e400"), Decimal("1234567.10"), 3]),
])
def test_exact_mode_reads_numbers_as_decimals(raw, value):
    """exact=True (/api/v1 bodies): fractions and exponents are Decimals as written; SCIM's
    default mode keeps floats and still refuses 1e400."""
    parsed = parse_json(raw, exact=True)
    assert parsed == value
    assert [type(v) for v in (parsed.values() if isinstance(parsed, dict) else parsed)] == \
        [type(v) for v in (value.values() if isinstance(value, dict) else value)]
    assert isinstance(parse_json(b"[0.1]")[0], float)


def test_exact_mode_refuses_an_exponent_decimal_cannot_hold():
    """1e999999999999999999999 is a 400-style JsonInputError, never an unhandled error."""
    with pytest.raises(JsonInputError, match="exponent is out of range"):
        parse_json(b"[1e999999999999999999999]", exact=True)
