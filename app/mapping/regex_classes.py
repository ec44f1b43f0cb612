"""The characters one piece of a Python pattern matches, as RE2 ranges (app/mapping/regex.py).

A literal under ``(?i)``, a range or a class is worked out from its members: a literal's case
partners come from one table of Python's own lower-case mapping (``_sre.unicode_tolower``,
what ``re`` compares under IGNORECASE, plus ``re._casefix``'s extra equivalences), each one
checked with ``re`` itself; ``\\d``, ``\\w`` and ``\\s`` are found once per process by running
``re`` over every code point. Only a case-insensitive range wider than ``_WIDE`` falls back to
such a scan of its own. Before, every distinct piece cost a scan (20-50 ms): a pattern of a
few hundred case-insensitive letters took seconds to save and again on each worker's first
SCIM write.
"""

from __future__ import annotations

import _sre
import functools
import re
import re._casefix as casefix
import re._constants as sre
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

MAX_CODE_POINT = 0x10FFFF
SURROGATES = (0xD800, 0xDFFF)  # no text holds them, and RE2 (UTF-8) cannot name them
_WIDE = 4096  # a case-insensitive range wider than this is scanned instead
_CATEGORIES: dict[Any, str] = {
    sre.CATEGORY_DIGIT: r"\d", sre.CATEGORY_NOT_DIGIT: r"\D",
    sre.CATEGORY_SPACE: r"\s", sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w", sre.CATEGORY_NOT_WORD: r"\W",
}
Spans = list[tuple[int, int]]


def members(op: Any, av: Any, flags: int) -> Spans:
    """Sorted, merged (first, last) code point spans the one-character piece matches."""
    negated = op is sre.NOT_LITERAL
    items: Iterable[tuple[Any, Any]] = [(sre.LITERAL, av)] if op is not sre.IN else av
    chars: set[int] = set()
    spans: Spans = []
    for kind, value in items:
        if kind is sre.NEGATE:
            negated = True
        elif kind is sre.LITERAL:
            chars |= _partners(value, flags)
        elif kind is sre.RANGE:
            low, high = value
            if not flags & re.IGNORECASE:
                spans.append((low, high))
            elif high - low <= _WIDE:
                for code in range(low, high + 1):
                    chars |= _partners(code, flags)
            else:
                spans.extend(scan(_range_piece(low, high), flags))
        else:  # CATEGORY: the only other item the parser puts in a class
            spans.extend(scan(_CATEGORIES[value], flags & re.ASCII))
    merged = _merge(spans + [(c, c) for c in chars])
    return _complement(merged) if negated else merged


@functools.lru_cache(maxsize=65536)
def _partners(code: int, flags: int) -> frozenset[int]:
    """``code`` and, under IGNORECASE, every character ``re`` matches it with."""
    if not flags & re.IGNORECASE or SURROGATES[0] <= code <= SURROGATES[1]:
        return frozenset({code})
    # Everything connected to it by the lower-case mapping (both ways) and re's extra
    # equivalences (U+017F ~ s): the capitals of an equivalent count too (U+03A3 for U+03C2).
    candidates: set[int] = set()
    frontier = {code}
    while frontier:
        known = frontier.pop()
        if known in candidates:
            continue
        candidates.add(known)
        lower = _sre.unicode_tolower(known)
        frontier.update({lower, *_uppers().get(lower, ()),
                         *casefix._EXTRA_CASES.get(known, ())} - candidates)
    literal = re.compile(re.escape(chr(code)), flags & (re.IGNORECASE | re.ASCII))
    return frozenset(c for c in candidates if literal.fullmatch(chr(c)))


@functools.cache
def _uppers() -> dict[int, tuple[int, ...]]:
    """Every code point whose lower case (as ``re`` folds it) is another one, by that one."""
    table: defaultdict[int, list[int]] = defaultdict(list)
    for code in range(MAX_CODE_POINT + 1):
        lower = _sre.unicode_tolower(code)
        if lower != code:
            table[lower].append(code)
    return {lower: tuple(codes) for lower, codes in table.items()}


def _range_piece(low: int, high: int) -> str:
    return f"[{re.escape(chr(low))}-{re.escape(chr(high))}]"


@functools.lru_cache(maxsize=256)
def scan(piece: str, flags: int) -> Spans:
    """The spans Python's ``re`` matches with ``piece`` under ``flags``, over every code
    point (tens of milliseconds: for the categories and very wide ranges only)."""
    return [(ord(m.group()[0]), ord(m.group()[-1]))
            for m in re.finditer(f"(?:{piece})+", _every_code_point(), flags)]


@functools.cache
def _every_code_point() -> str:
    """Every code point but the surrogates, in order: what pieces are matched against."""
    low, high = SURROGATES
    return "".join(map(chr, range(low))) + "".join(map(chr, range(high + 1,
                                                                   MAX_CODE_POINT + 1)))


def _merge(spans: Spans) -> Spans:
    """Sorted spans with overlapping and adjacent ones joined (the surrogates count as
    adjacent: no text holds them)."""
    out: Spans = []
    for low, high in sorted(spans):
        if out and (low <= out[-1][1] + 1 or (out[-1][1] == SURROGATES[0] - 1
                                               and low == SURROGATES[1] + 1)):
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _complement(spans: Spans) -> Spans:
    """Every code point (but the surrogates) outside ``spans``."""
    out: Spans = []
    start = 0
    for low, high in spans:
        if low > start:
            out.append((start, low - 1))
        start = max(start, high + 1)
    if start <= MAX_CODE_POINT:
        out.append((start, MAX_CODE_POINT))
    gap_low, gap_high = SURROGATES
    result: Spans = []
    for low, high in out:  # cut the surrogates out
        if high < gap_low or low > gap_high:
            result.append((low, high))
            continue
        if low < gap_low:
            result.append((low, gap_low - 1))
        if high > gap_high:
            result.append((gap_high + 1, high))
    return result
