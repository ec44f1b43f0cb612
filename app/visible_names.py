"""The one rule for names people give and read: organizations, directories, units,
connections, roles, API keys (app/directory/names.py, the API's NameLength, the CLI's
``--name``, units added by hand or made by the mapping from an IdP attribute).

A name is refused when it holds a control character (Unicode category Cc: a tab, a line
break, ESC, U+0001 ...): it breaks every list and table it is shown in, and a terminal may
obey it. Or a bidirectional embedding, override or isolate (U+202A-U+202E, U+2066-U+2069;
UAX #9 §2.1-§2.4): it reorders what is shown after it, so "Sales" U+202E "UE" lists as
"SalesEU" and a name can pose as another in the CLI, the admin API's consumers and the
audit log ("Trojan Source", CVE-2021-42574). The marks U+200E, U+200F and U+061C reorder
nothing beyond their neighbours and stay allowed (right-to-left names need them). And
when it has no visible character: only white space, format characters
(category Cf: U+200B ZERO WIDTH SPACE, U+2060 WORD JOINER, U+FEFF, the soft hyphen U+00AD,
bidirectional marks), separators, or the blank fillers Unicode lists as default-ignorable
(U+3164 HANGUL FILLER, U+115F, U+1160, U+FFA0, variation selectors) and U+2800 BRAILLE
PATTERN BLANK. ``str.strip()`` removes none of those, so such a name passed "not blank"
and showed as nothing. A format character inside a visible name stays allowed (an emoji's
zero width joiner, a soft hyphen in "Ein\u00adkauf").

Free text people type (a role's description, an operator's deprovisioning or reactivation
reason) follows the same rule through ``text_problem``, except that it may be empty when
the field is optional. It is one line: shown in CLI tables, the audit log and signed
receipts, where a line break or a tab breaks the layout as in a name, so a line break or
a tab is refused too (the role's description, the reason: a sentence or two).

Pure text, no database: the mapping's rules (app/mapping/rules.py) use it too. It is not
applied to the user attributes an IdP sends over SCIM, which are stored as sent (RFC 7643).
"""

from __future__ import annotations

import unicodedata

# Shown as nothing, though of a category that is not a space or a format character.
_BLANK_FILLERS = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f"
                           "\u2800\u3164\uffa0")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# LRE RLE PDF LRO RLO, LRI RLI FSI PDI (UAX #9 Table 1).
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(char: str) -> bool:
    if char.isspace() or char in _BLANK_FILLERS:
        return False
    if "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef":
        return False  # variation selectors
    return unicodedata.category(char) not in _INVISIBLE_CATEGORIES


def name_problem(value: str) -> str | None:
    """Why ``value`` is no usable name (a phrase to follow "must"), or None. Empty and
    whitespace-only names are the callers' own cases, checked first."""
    for char in value:
        if unicodedata.category(char) == "Cc":
            return (f"not hold a control character (U+{ord(char):04X}: a tab, a line break "
                    "or another control)")
        if char in _BIDI_CONTROLS:
            return (f"not hold a bidirectional override or isolate (U+{ord(char):04X}): it "
                    "reorders the text shown after it")
    if not any(_visible(char) for char in value):
        return ("hold a visible character (not only spaces or invisible characters such "
                "as U+200B)")
    return None


def text_problem(value: str) -> str | None:
    """Why ``value`` is no usable free text (a phrase to follow "must"), or None: the rule of
    names (no control character, line breaks and tabs included; no bidirectional override
    or isolate; some visible character), except that empty text is the caller's case (an
    optional field left empty)."""
    if not value:
        return None
    return name_problem(value)
