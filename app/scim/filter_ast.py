"""The SCIM filter tree (RFC 7644 §3.4.2.2) that app.scim.filters translates to SQL.

Built by app.scim.filter_parser from scim2-filter-parser's output; plain frozen values, so a
parsed filter can be cached and shared between requests and threads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from app.scim.errors import ScimError

Value = str | bool | int | float | None


def invalid(detail: str) -> ScimError:
    """The 400 invalidFilter error (RFC 7644 §3.4.2.2, Table 9)."""
    return ScimError(400, detail, "invalidFilter")


@dataclass(frozen=True)
class Path:
    """An attribute path as written: optional schema URN, attribute, optional sub-attribute."""

    urn: str | None
    attr: str
    sub: str | None
    text: str


@dataclass(frozen=True)
class Compare:
    """``path op value`` (attrExp)."""

    path: Path
    op: str
    value: Value
    raw: str | None = None  # the token as written, when the value was not a quoted string


@dataclass(frozen=True)
class Present:
    """``path pr``."""

    path: Path


@dataclass(frozen=True)
class Logical:
    """``left and right`` / ``left or right``."""

    op: Literal["and", "or"]
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    """``not (filter)``."""

    expr: Node


@dataclass(frozen=True)
class ValuePath:
    """``attr[filter]``, optionally followed by ``.sub op value`` (an Entra extension)."""

    path: Path
    filter: Node
    then: Compare | Present | None = None


Node = Compare | Present | Logical | Not | ValuePath
