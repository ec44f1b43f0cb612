"""Case folding of names, as Roster's SQL folds them (RFC 7643 §2.2, caseExact=false).

Pure text, no database: the mapping's rules (app/mapping/rules.py, which may import nothing
that touches a database) compare unit paths with the same fold as the unique index on
``units.path`` (migration 0022) and the SQL function ``app.sql.fold``, so two paths are one
unit in the mapping exactly when the database says so. ``str.casefold`` would not do:
it joins ``Straße`` and ``STRASSE``, which the database keeps apart.
"""

from __future__ import annotations

# The two letters whose full lower-case mapping (Python's str.lower) is not their simple
# one (PostgreSQL's lower() in a UTF-8 locale, letter by letter): U+0130 becomes "i" plus
# U+0307 in full, and a word-final capital sigma becomes U+03C2 in full, U+03C3 in simple.
_DOTTED_CAPITAL_I, _CAPITAL_SIGMA = "\u0130", "\u03a3"


def fold_text(value: str) -> str:
    """``value`` folded as ``app.sql.fold`` folds it in SQL: Unicode's simple lower-case
    mapping, letter by letter. It is SQLite's ``roster_lower()``, and PostgreSQL's
    ``lower()`` in a libc UTF-8 locale (README); ``str.lower`` differs for U+0130 (``İ``)
    and a final ``Σ``. Python-side comparisons of names use it. A value compared with a
    ``fold`` column in SQL is folded there too (``fold(column) == fold(literal(value))``),
    so a PostgreSQL database with another locale still agrees with itself.
    """
    if _DOTTED_CAPITAL_I not in value and _CAPITAL_SIGMA not in value:
        return value.lower()  # the same mapping, in C (nearly every call)
    return "".join("i" if letter == _DOTTED_CAPITAL_I else letter.lower() for letter in value)
