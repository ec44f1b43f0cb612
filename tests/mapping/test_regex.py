"""app/mapping/regex.py: rule regexes on RE2 keep Python's meaning, or are refused (pure)."""

from __future__ import annotations

import re
import re._constants as sre
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.mapping.regex import PatternError, check, fullmatcher

# (pattern, value): each must answer what Python's re.fullmatch answered before RE2.
SAME_AS_PYTHON = [
    (r"Sales-\d{2}", "Sales-42"), (r"Sales-\d{2}", "Sales-٤٢"),  # Unicode digits, as in re
    (r"\w+", "Müller"), (r"\w+", "東京"), (r"\w+", "e\u0301"), (r"\W", "\u0345"),
    (r"\s", "\v"), (r"\s", "\u2003"), (r"\s", "\x1c"), (r"\S+", "a b"),
    (r"(?i)istanbul", "İSTANBUL"), (r"(?i)istanbul", "\u0131stanbul"), (r"(?i)k", "\u212a"),
    (r"(?i)[a-z]+", "\u017fK"), (r"(?i)[^k]", "K"), (r"(?i:a)b", "AB"), (r"(?i:a)b", "Ab"),
    (r"(?a)\w", "é"), (r"(?a)\d", "٤"), (r"(?ai)k", "\u212a"),
    (r"engineering", "Engineering"), (r"Eng.*", "Eng\nineering"), (r"(?s)Eng.*", "Eng\nx"),
    (r"abc$", "abc\n"), (r"abc$", "abc"), (r"^abc\Z", "abc"), (r"\Aabc", "abc"),
    (r"(?m)^a$\n^b$", "a\nb"), (r"(?m)a\n^", "a\n"), (r"(?m)a$", "a\n"),
    (r"a|b|", ""), (r"x{2,5}?", "xxx"), (r"x{3}", "xxxx"), (r"(?x) a  b # comment", "ab"),
    (r"[\]\-^]+", "]-^"), (r"[^\n]*", "tab\there"), (r"(?P<name>team)-\d", "team-1"),
    (r"", ""), (r"a*?", "aaa"), (r".", "😀"), (r"[😀-😂]", "😁"),
]


@pytest.mark.parametrize(("pattern", "value"), SAME_AS_PYTHON)
def test_re2_answers_what_python_re_answered(pattern, value):
    """Unicode classes, (?i) folding, anchors and flags match exactly as Python's re did."""
    assert fullmatcher(pattern)(value) == (re.fullmatch(pattern, value) is not None)


@pytest.mark.parametrize(("pattern", "named"), [
    (r"(a)\1", "backreference"), (r"(?P<x>a)(?P=x)", "backreference"),
    (r"(?=a)a", "lookahead or lookbehind"), (r"(?<=a)b", "lookahead or lookbehind"),
    (r"(?!a)b", "negative lookahead"), (r"(?<!a)b", "negative lookahead"),
    (r"(a)?(?(1)b|c)", "conditional group"), (r"(?>a+)", "atomic group"),
    (r"a++", "possessive quantifier"), (r"\bsales\b", "word boundary"),
    (r"a$\n", "$ before more pattern"), (r"x{1001}", "invalid repetition size"),
    (r"\w{1000}", "more memory"), (r"(", "invalid regular expression"),
    ("(" * 51 + "a" + ")" * 51, "nests more than 50"), ("[" * 60 + "a]", "nests more than 50"),
])
def test_patterns_re2_cannot_run_are_refused_by_name(pattern, named):
    """What RE2 cannot run with Python's meaning is a PatternError saying what it is."""
    with pytest.raises(PatternError, match=re.escape(named)):
        check(pattern)


@pytest.mark.parametrize("pattern", [r"\w{3,64}", r"[\w.-]{1,64}@\w+", r"\w{2,60}",
                                     "(" * 50 + "a" + ")" * 50,
                                     "(?i)" + "".join(chr(0x4E00 + i) for i in range(400))])
def test_ordinary_patterns_are_taken(pattern):
    """Bounded Unicode word patterns fit RE2's memory (they did not in 1 MiB: such stored
    rules were disabled at the upgrade), and a case-insensitive pattern of hundreds of
    letters is worked out letter by letter, not by a scan of every code point per letter."""
    check(pattern)


def test_catastrophic_pattern_runs_in_linear_time():
    """(a+)+$ against a long near-miss: Python's re backtracks for ages, RE2 answers at once."""
    started = time.monotonic()
    assert not fullmatcher(r"(a+)+$")("a" * 100_000 + "!")
    assert not fullmatcher(r"(x+x+)+y")("x" * 100_000)
    assert time.monotonic() - started < 1


ATOMS = st.sampled_from(["a", "b", "A", "\u0131", "İ", "K", "\u212a", "é", "٤", "1", r"\d", r"\w",
                         r"\s", r"\W", ".", "[a-c]", "[^b]", r"[\dK]", "[^a\\w]", "(?i:a)",
                         "(?i:[k-m])", "(?i:\u0131)", r"\n", " ", "_"])
VALUES = st.text(alphabet="abA\u0131İiIkK\u212aé٤1 \n_\u0345", max_size=6)


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    """Small patterns built from the pieces whose meaning differs most between engines."""
    pieces = ATOMS if depth > 1 else st.one_of(ATOMS, patterns(depth + 1))
    body, other = (draw(st.lists(pieces, min_size=1, max_size=4).map("".join))
                   for _ in range(2))
    shape = draw(st.sampled_from(["{}", "(?:{})*", "(?:{})+?", "(?:{}|{})", "(?:{})?",
                                  "(?i:{})", "(?:{}){{1,2}}"]))
    return shape.format(body, other)


@settings(max_examples=300, deadline=None)
@given(patterns(), VALUES, st.booleans())
def test_generated_patterns_match_as_python_re_did(pattern, value, ignore_case):
    """Property: for generated patterns RE2's full match equals Python's re.fullmatch."""
    pattern = ("(?i)" if ignore_case else "") + pattern
    assert fullmatcher(pattern)(value) == (re.fullmatch(pattern, value) is not None), pattern


# Letters whose case partners reach beyond upper/lower: U+00B5 micro sign, dotless i, long s,
# final sigma, the Greek symbol variants, Cyrillic U+1C80-U+1C88, Kelvin sign, sharp s ...
TRICKY = "".join(map(chr, [
    0xb5, 0x131, 0x17f, 0x345, 0x3c2, 0x3d0, 0x3d1, 0x3d5, 0x3d6, 0x3f0, 0x3f1, 0x3f5, 0x1c80,
    0x1c81, 0x1c82, 0x1c83, 0x1c84, 0x1c85, 0x1c86, 0x1c87, 0x1c88, 0x1e9b, 0x1fbe, 0x4b, 0x6b,
    0x53, 0x73, 0x49, 0x69, 0x130, 0x3a3, 0x3c3, 0x39c, 0x212a, 0xdf, 0x1e9e,
]))


@pytest.mark.parametrize("char", list(TRICKY))
def test_a_case_insensitive_letter_matches_what_re_matches(char):
    """Under (?i) a letter matches every character re matches it with, the capitals of its
    extra equivalents included (capital sigma for final sigma, S for long s): the set worked
    out from the case table equals a scan of every code point with re itself."""
    from app.mapping.regex_classes import members, scan

    for flags in (re.IGNORECASE, re.IGNORECASE | re.ASCII):
        assert members(sre.LITERAL, ord(char), flags) == scan(re.escape(char), flags), char


# Unicode \w{2,10} and \d{1,5}: about 13,500 RE2 instructions each (~130 KiB in a worker).
def _big(i: int) -> str:
    return r"\w{2,10}-\d{1,5}" + f"big{i}"


def test_compiled_patterns_are_bounded_by_what_they_weigh():
    """The cache drops the least recently used programs once their instructions exceed
    its budget, and a dropped pattern still matches (compiled again). The old cache kept
    4,096 patterns whatever their size: a worker grew by gigabytes."""
    from app.mapping.regex import _ProgramCache

    cache = _ProgramCache(60_000)
    sizes = [cache.get(_big(i))[1] for i in range(10)]
    assert min(sizes) > 10_000
    assert cache.weight <= 60_000 < sum(sizes)
    matcher, size = cache.get(_big(0))
    assert matcher("ab-12big0")
    assert not matcher("ab-12big1")
    assert size == sizes[0]
    assert cache.weight <= 60_000


def test_rule_matchers_keep_no_program_the_cache_let_go(monkeypatch):
    """Neither the rules' matcher cache nor re2's own module cache (128 programs) holds a
    compiled pattern beyond the bounded cache: after matching a dozen patterns the cache
    has room for two, at most two are alive."""
    import gc

    import re2

    from app.mapping import regex
    from app.mapping.rules import _matcher

    monkeypatch.setattr(regex._CACHE, "budget", 30_000)
    for i in range(12):
        assert _matcher("regex", _big(100 + i), True)(f"ab-1big{100 + i}")
    gc.collect()
    ours = {regex.translate(_big(100 + i)) for i in range(12)}
    alive = [o for o in gc.get_objects() if isinstance(o, re2._Regexp) and o.pattern in ours]
    assert 1 <= len(alive) <= 2


def test_check_gives_the_program_size():
    """check() answers what a worker keeps for a pattern: small for an ordinary one, large
    for Unicode classes repeated (what a rule set's budget adds up)."""
    assert check("(?i)purchasing-.*") < 100
    assert check(r"\w{3,64}") > 50_000
