"""Regular expressions of mapping rules, run by RE2: linear time, whatever the pattern.

Rules are written by organization admins and matched against IdP values on every SCIM write
and SSO login, so Python's backtracking ``re`` let one pattern (``(a+)+$``) freeze a worker.
RE2 (google-re2) never backtracks; its memory is bounded by ``MAX_MEM``.

The pattern is read by Python's own parser (``re._parser``, what ``re.compile`` used before)
and written again in RE2 syntax, piece by piece, so a pattern keeps the meaning it had:

- ``\\d``, ``\\w``, ``\\s``, their negations, any character class, and every literal under
  ``(?i)`` become the explicit set of characters Python's ``re`` matches for them
  (app/mapping/regex_classes.py): Unicode classes and case-insensitivity (``(?i)i`` also
  matches the dotless ``\\u0131``) stay Python's. One difference remains: RE2 reads a class
  of two case partners in an alternation (``ab|a[Kk]``) as a case-folded letter, which also
  matches the Kelvin sign (U+212A) or the long s (U+017F);
- ``.`` is ``[^\\n]`` (``(?s)``: any character), ``^`` and ``$`` keep ``(?m)``'s meaning;
- constructs RE2 cannot run in linear time, or whose meaning it cannot keep, are refused
  with a :class:`PatternError` naming them: backreferences, lookahead and lookbehind,
  conditionals, atomic groups, possessive quantifiers, ``\\b`` and ``\\B`` (RE2's word
  boundaries are ASCII-only), and ``$`` before more pattern without ``(?m)`` (Python lets
  it match before a final newline, which RE2 cannot say).

Matching is a full match, as before.
"""

from __future__ import annotations

import functools
import re
import re._constants as sre
import re._parser as sre_parse
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import re2

from app.mapping.regex_classes import SURROGATES, members

# Bytes of RE2 program and DFA cache per pattern (RE2's default); over it: refused. Unicode
# ``\w`` is hundreds of ranges: ``\w{3,64}`` needs more than 1 MiB.
MAX_MEM = 8 << 20
# Parentheses and brackets one pattern may nest (the translation recurses on them).
MAX_DEPTH = 50
# RE2 program instructions the compiled patterns of one worker may hold, and those of one
# rule set. A worker measured ~9 bytes per instruction with its match caches, so ~75 MiB.
# Unicode ``\w{3,64}`` is 110,000 instructions (~1 MiB): a count-bounded cache of 4,096
# such patterns grew a worker by gigabytes.
CACHE_INSTRUCTIONS = 8_000_000
RULESET_INSTRUCTIONS = 2_000_000

_REFUSED: dict[Any, str] = {
    sre.GROUPREF: "a backreference (\\1, (?P=name))",
    sre.GROUPREF_EXISTS: "a conditional group ((?(1)...|...))",
    sre.ASSERT: "a lookahead or lookbehind ((?=...), (?<=...))",
    sre.ASSERT_NOT: "a negative lookahead or lookbehind ((?!...), (?<!...))",
    sre.ATOMIC_GROUP: "an atomic group ((?>...))",
    sre.POSSESSIVE_REPEAT: "a possessive quantifier (*+, ++, ?+, {m,n}+)",
}
# Flags that change which characters one piece matches (the others are handled here).
_CHAR_FLAGS = re.IGNORECASE | re.ASCII


class PatternError(ValueError):
    """A pattern Python cannot parse, or one RE2 cannot run with the same meaning."""


def check(pattern: str) -> int:
    """Raise PatternError unless ``pattern`` can be matched by :func:`fullmatcher`; else
    the size of its RE2 program (instructions), what a worker holds for it."""
    return _CACHE.get(pattern)[1]


def fullmatcher(pattern: str) -> Callable[[str], bool]:
    """A linear-time test: does the whole value match ``pattern`` (Python syntax)?"""
    return _CACHE.get(pattern)[0]


class _ProgramCache:
    """Compiled patterns, least recently used first out, bounded by the instructions they
    hold rather than by their number. A refused pattern is remembered too (weight 1), as
    every load of a rule set checks its stored patterns again."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.weight = 0
        self._entries: OrderedDict[str, tuple[Callable[[str], bool] | PatternError, int]] = \
            OrderedDict()
        self._lock = threading.Lock()

    def get(self, pattern: str) -> tuple[Callable[[str], bool], int]:
        """The matcher and its program size; PatternError when there is none."""
        with self._lock:
            entry = self._entries.get(pattern)
            if entry is not None:
                self._entries.move_to_end(pattern)
        if entry is None:
            try:
                entry = _compile(pattern)
            except PatternError as exc:
                entry = (exc, 1)
            self._put(pattern, entry)
        if isinstance(entry[0], PatternError):
            raise entry[0]
        return entry[0], entry[1]

    def _put(self, pattern: str, entry: tuple[Callable[[str], bool] | PatternError, int]
             ) -> None:
        with self._lock:
            old = self._entries.pop(pattern, None)
            self.weight += entry[1] - (old[1] if old else 0)
            self._entries[pattern] = entry
            while self.weight > self.budget and len(self._entries) > 1:
                _pattern, (_found, weight) = self._entries.popitem(last=False)
                self.weight -= weight


_CACHE = _ProgramCache(CACHE_INSTRUCTIONS)


def _compile(pattern: str) -> tuple[Callable[[str], bool], int]:
    options = re2.Options()
    options.max_mem = MAX_MEM
    options.log_errors = False
    try:
        compiled = re2.compile(translate(pattern), options)
    except re2.error as exc:
        reason = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) \
            else str(exc)
        if "too large" in reason or "memory" in reason:
            reason = "it needs more memory than a rule's pattern may use"
        raise PatternError(f"RE2 cannot run this pattern: {reason}") from None
    finally:
        re2.purge()  # re2.compile keeps the last 128 itself: only _CACHE may keep them
    return (lambda value: compiled.fullmatch(value) is not None), max(compiled.programsize, 1)


def translate(pattern: str) -> str:
    """The RE2 pattern that matches what Python's ``re`` matches for ``pattern``."""
    if any(SURROGATES[0] <= ord(ch) <= SURROGATES[1] for ch in pattern):
        raise PatternError("the pattern holds a UTF-16 surrogate, which is not text")
    if _depth(pattern) > MAX_DEPTH:
        raise PatternError(f"the pattern nests more than {MAX_DEPTH} groups or classes")
    try:
        parsed = sre_parse.parse(pattern, 0)
    except (re.error, RecursionError) as exc:
        raise PatternError(f"invalid regular expression: {exc}") from None
    return _sequence(parsed, parsed.state.flags, tail=True)


def _depth(pattern: str) -> int:
    """How deep ``(`` and ``[`` nest, escapes skipped (an upper bound: ``[(]`` counts)."""
    depth = deepest = 0
    escaped = False
    for ch in pattern:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "([":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in ")]":
            depth = max(depth - 1, 0)
    return deepest


def _sequence(items: Iterable[tuple[Any, Any]], flags: int, *, tail: bool) -> str:
    items = list(items)
    return "".join(_item(op, av, flags, tail=tail and i == len(items) - 1)
                   for i, (op, av) in enumerate(items))


def _item(op: Any, av: Any, flags: int, *, tail: bool) -> str:
    if op in _REFUSED:
        raise PatternError(f"the pattern uses {_REFUSED[op]}, which the linear-time "
                           "matcher (RE2) cannot run")
    if op is sre.LITERAL and not flags & re.IGNORECASE:
        return _escape(av)
    if op in (sre.LITERAL, sre.NOT_LITERAL, sre.IN):
        return _char_class(op, _hashable(av), flags & _CHAR_FLAGS)
    if op is sre.ANY:
        return "(?s:.)" if flags & re.DOTALL else "[^\\n]"
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
        low, high, body = av
        lazy = "?" if op is sre.MIN_REPEAT else ""
        return f"(?:{_sequence(body, flags, tail=False)}){_quantifier(low, high)}{lazy}"
    if op is sre.SUBPATTERN:
        _group, add, remove, body = av
        if add & sre_parse.TYPE_FLAGS:
            flags &= ~sre_parse.TYPE_FLAGS
        return f"(?:{_sequence(body, (flags | add) & ~remove, tail=tail)})"
    if op is sre.BRANCH:
        return "(?:" + "|".join(_sequence(arm, flags, tail=tail) for arm in av[1]) + ")"
    if op is sre.AT:
        return _anchor(av, flags, tail=tail)
    raise PatternError(f"the pattern uses {op}, which the linear-time matcher cannot run")


def _quantifier(low: int, high: int) -> str:
    if high == sre.MAXREPEAT:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    if (low, high) == (0, 1):
        return "?"
    return f"{{{low}}}" if low == high else f"{{{low},{high}}}"


def _anchor(at: Any, flags: int, *, tail: bool) -> str:
    if at is sre.AT_BEGINNING_STRING:
        return r"\A"
    if at is sre.AT_END_STRING:
        return r"\z"
    if at is sre.AT_BEGINNING:
        return "(?m:^)" if flags & re.MULTILINE else r"\A"
    if at is sre.AT_END:
        if flags & re.MULTILINE:
            return "(?m:$)"
        if tail:  # a full match ends here: Python's "or before a final newline" cannot hold
            return r"\z"
        raise PatternError("the pattern has $ before more pattern; RE2 cannot keep its "
                           "meaning (end, or before a final newline): use \\n or (?m)")
    raise PatternError("the pattern uses \\b or \\B (a word boundary), which RE2 only "
                       "knows for ASCII; write the characters out instead")


def _escape(code_point: int) -> str:
    return f"\\x{{{code_point:x}}}"


def _hashable(av: Any) -> Any:
    """A class's item list as a tuple (for the cache); a literal's code point as it is."""
    return tuple(av) if isinstance(av, list) else av


@functools.lru_cache(maxsize=4096)
def _char_class(op: Any, av: Any, flags: int) -> str:
    """An RE2 class of exactly the characters Python's ``re`` matches with the piece."""
    ranges = members(op, av, flags)
    if not ranges:
        return r"[^\x00-\x{10ffff}]"
    if len(ranges) == 1 and ranges[0][0] == ranges[0][1]:
        return _escape(ranges[0][0])
    return "[" + "".join(_escape(lo) if lo == hi else f"{_escape(lo)}-{_escape(hi)}"
                         for lo, hi in ranges) + "]"
