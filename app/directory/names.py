"""Names an operator or customer admin gives (organizations, directories, connections,
roles, API keys): one check, so the API and the CLI refuse the same names alike."""

from __future__ import annotations

import re

from app.errors import InvalidInput
from app.visible_names import name_problem

NAME_MAX = 200
# The shape of an id (app/ids.py, lower-case hex): a name of that shape could be another
# row's id where a lookup takes an id or a name (organization slugs, directory names).
ID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")


def checked_name(value: str, what: str, *, field: str = "name", optional: bool = False,
                 limit: int = NAME_MAX) -> str:
    """``value`` if it is a usable name, else InvalidInput naming ``field``: empty (unless
    ``optional``: then a default applies), whitespace only (it shows as nothing in every
    list), holding a control character or no visible one (app/visible_names.py), or
    longer than ``limit`` (never cut: the name given is the name kept)."""
    if not value:
        if optional:
            return value
        raise InvalidInput(f"{what} must not be empty", field=field)
    if not value.strip():
        raise InvalidInput(f"{what} must not be blank (whitespace only)", field=field)
    if (problem := name_problem(value)) is not None:
        raise InvalidInput(f"{what} must {problem}", field=field)
    if len(value) > limit:
        raise InvalidInput(f"{what} is longer than {limit} characters ({len(value)} given)",
                           field=field)
    return value


# An id (a UUID) is 36 characters, a key's or token's display prefix fewer; a key or token
# itself is longer (256 random bits).
_REF_MAX = 36


def shown_ref(ref: str) -> str:
    """A reference to an API key or a token as an error may quote it: the id or prefix
    given, or, for anything longer (most likely the secret itself, pasted to revoke a
    leaked key), a note that it is not shown."""
    if len(ref) <= _REF_MAX:
        return repr(ref)
    return "given (not shown: longer than an id or a prefix, it may be the secret itself)"
