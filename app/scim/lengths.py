"""String attributes longer than the column that keeps them: a precise 400 on every database.

PostgreSQL refuses a value longer than its ``VARCHAR(n)`` column, SQLite keeps it: without
this check the same SCIM request would be stored on one database and end in a 500 on the
other. RFC 7644 §3.12: a value "not compatible with the ... attribute type" is 400
``invalidValue``. The limits are read from the models, so a wider column widens them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NoReturn

from sqlalchemy import Table

from app.scim.errors import ScimError

Limit = tuple[str, str, int]  # SCIM attribute, column, characters


def limits(table: Table, attributes: Mapping[str, str], prefix: str = "") -> list[Limit]:
    """(``prefix`` + attribute, column, length) for each attribute whose column is bounded."""
    found = []
    for attribute, column in attributes.items():
        length = getattr(table.c[column].type, "length", None)
        if length:
            found.append((prefix + attribute, column, int(length)))
    return found


def check(values: Mapping[str, Any], bounded: Iterable[Limit]) -> None:
    """Raise 400 invalidValue for the first string in ``values`` (by column) too long."""
    for attribute, column, length in bounded:
        value = values.get(column)
        if isinstance(value, str) and len(value) > length:
            too_long(attribute, length, len(value))


def too_long(attribute: str, length: int, given: int) -> NoReturn:
    """Raise the 400 invalidValue for ``attribute``."""
    raise ScimError(400, f"Attribute '{attribute}' is longer than {length} characters "
                         f"({given} given)", "invalidValue")
