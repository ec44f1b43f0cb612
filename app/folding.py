"""Case folding of names, as Roster's SQL folds them (RFC 7643 §2.2, caseExact=false).

Pure text, no database: the mapping's rules (app/mapping/rules.py, which may import nothing
that touches a database) compare unit paths with the same fold as the unique index on
``units.path`` (migration 0022) and the SQL function ``app.sql.fold``, so two paths are one
unit in the mapping exactly when the database says so. ``str.casefold`` would not do:
it joins ``Straße`` and ``STRASSE``, which the database keeps apart.

The fold first brings text to Unicode Normalization Form C (UAX #15): ``José`` typed as
``e`` plus a combining acute (NFD, what macOS file names and some IdP exports hold) and as
the one letter ``é`` are canonically equivalent, the same name to every reader, and were
two userNames (migration 0032).
"""

from __future__ import annotations

import unicodedata

# The two letters whose full lower-case mapping (Python's str.lower) is not their simple
# one (PostgreSQL's lower() in a UTF-8 locale, letter by letter): U+0130 becomes "i" plus
# U+0307 in full, and a word-final capital sigma becomes U+03C2 in full, U+03C3 in simple.
_DOTTED_CAPITAL_I, _CAPITAL_SIGMA = "\u0130", "\u03a3"


def fold_text(value: str) -> str:
    """``value`` folded as ``app.sql.fold`` folds it in SQL: brought to NFC, then Unicode's
    simple lower-case mapping, letter by letter. It is SQLite's ``roster_fold()``, and
    PostgreSQL's ``lower(normalize(x, NFC))`` in a libc UTF-8 locale (README); ``str.lower``
    differs for U+0130 (``İ``) and a final ``Σ``. Python-side comparisons of names use it.
    A value compared with a ``fold`` column in SQL is folded there too
    (``fold(column) == fold(literal(value))``), so a PostgreSQL database with another
    locale still agrees with itself.
    """
    if value.isascii():
        return value.lower()  # ASCII is its own NFC (nearly every call)
    return simple_lower(unicodedata.normalize("NFC", value))


def simple_lower(value: str) -> str:
    """Unicode's simple lower-case mapping, letter by letter, without normalization: the fold
    of migrations 0012 to 0031, SQLite's ``roster_lower()``, on which the indexes built
    before 0032 are (app.engine.register_fold)."""
    if _DOTTED_CAPITAL_I not in value and _CAPITAL_SIGMA not in value:
        return value.lower()
    return "".join("i" if letter == _DOTTED_CAPITAL_I else letter.lower() for letter in value)
