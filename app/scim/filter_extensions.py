"""Filters on attributes of extensions Roster does not know (RFC 7644 §3.4.2.2, §3.10).

Blocks under unknown extension URNs (Entra's custom attributes, Okta's
``urn:okta:<app>:1.0:user:custom``) are kept as sent in ``extension_data`` (a JSON column,
jsonb on PostgreSQL). A filter naming one of their attributes is translated here into an
EXISTS over that column's JSON, in the database, with the URN, names and value bound.

- The path splits as PATCH paths do (``app.scim.values.opaque_parts``): the attribute is
  what follows the last colon (RFC 7644 §3.10), an optional ``.sub`` names a member of an
  object value; the URN before it must be ``urn:<namespace>:<name>`` and no schema Roster
  knows. A path that is itself a block URN ending in the resource type (``...:2.0:User``) is
  no attribute: 400 invalidFilter.
- URNs and attribute names match case-insensitively (RFC 7643 §2.1): any stored key that
  folds (``app.sql.fold``) to the one in the filter.
- Without a schema, values compare by their JSON type and the literal's (RFC 7643 §2.2
  defaults): strings caseExact=false through the same fold as userName, numbers as numbers,
  booleans with ``eq``/``ne`` only. A value of another JSON type never matches.
- An array matches when one of its elements does, as multi-valued attributes do; an object
  only through a sub-attribute (``badge.id``), or ``pr`` when it is not empty.
- ``pr`` holds for a value that is not null, ``""``, ``[]`` or ``{}`` (an array: one element
  that is present). ``ne`` is ``not eq``, so it also holds where the attribute is absent.

Not index-backed: such a filter scans the directory's users (or groups).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    case,
    cast,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from app.models.directory import Group, User
from app.scim.filter_operators import ordered, substring
from app.scim.filter_syntax import Compare, Path, Present, Resource, invalid
from app.scim.values import KNOWN_URNS, opaque_parts, schemas_for
from app.sql import fold

Bool = ColumnElement[bool]
_SQLITE_KINDS = {"string": ("text",), "number": ("integer", "real"),
                 "boolean": ("true", "false"), "array": ("array",), "object": ("object",),
                 "null": ("null",)}


@dataclass(frozen=True)
class CustomPath:
    """An attribute of an unknown extension block: its URN, name and sub-attribute as sent."""

    urn: str
    attr: str
    sub: str | None
    text: str


def custom_path(path: Path, resource: Resource) -> CustomPath | None:
    """The custom attribute ``path`` names, or None for core and known-extension paths.

    A ``urn:`` path into no known schema that cannot name an attribute is invalidFilter.
    """
    if path.urn is None or not path.urn.lower().startswith("urn:"):
        return None
    base = f"{path.urn}:{path.attr}"
    if path.urn.lower() in KNOWN_URNS or base.lower() in KNOWN_URNS:
        return None
    parts = opaque_parts(base, schemas_for(resource))
    if parts is None:
        raise invalid(f"{path.text!r} names no attribute: an attribute of a custom extension "
                      f"is urn:<namespace>:<name>:<attribute>, e.g. "
                      f"urn:ietf:params:scim:schemas:extension:Acme:2.0:{resource}:costCode")
    if not parts[1]:
        raise invalid(f"{path.text!r} is an extension schema, not an attribute: name one of "
                      f"its attributes ({base}:<attribute>)")
    return CustomPath(parts[0], parts[1], path.sub, path.text)


class _Cell(NamedTuple):
    """One JSON value in SQL: itself and its JSON type as the dialect names it."""

    value: ColumnElement[Any]
    kind: ColumnElement[Any]


Check = Callable[[_Cell], Bool]  # the test one JSON value must pass


class _Json:
    """The JSON functions of one dialect: json_each (SQLite) or jsonb_each and
    jsonb_array_elements (PostgreSQL), each guarded so that it never sees a JSON value it
    would raise on."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        self.pg = dialect == "postgresql"

    def column(self, column: ColumnElement[Any]) -> _Cell:
        return _Cell(column, func.jsonb_typeof(column) if self.pg else func.json_type(column))

    def is_(self, cell: _Cell, kind: str) -> Bool:
        if self.pg:
            return cell.kind == kind
        # Not IN (...): an expanding parameter would re-render the statement per execution.
        return or_(*(cell.kind == name for name in _SQLITE_KINDS[kind]))

    def _each(self, container: ColumnElement[Any], members: bool) -> tuple[Any, _Cell]:
        if self.pg:
            fn = func.jsonb_each(container) if members else func.jsonb_array_elements(container)
            rows = (fn.table_valued("key", "value") if members
                    else fn.table_valued("value")).alias()
            return rows, _Cell(rows.c.value, func.jsonb_typeof(rows.c.value))
        rows = func.json_each(container).table_valued("key", "value", "type").alias()
        return rows, _Cell(rows.c.value, rows.c.type)

    def empty(self, text: str) -> ColumnElement[Any]:
        return cast(literal(text), JSONB) if self.pg else literal(text, String())

    def members(self, cell: _Cell) -> tuple[Any, _Cell]:
        """The members of an object value (none for any other value), with ``key``."""
        guarded = case((self.is_(cell, "object"), cell.value), else_=self.empty("{}"))
        return self._each(guarded, members=True)

    def elements(self, cell: _Cell, *, objects: bool = False) -> tuple[Any, _Cell]:
        """The elements of an array value; with ``objects`` an object value is its own one
        element (``badge.id`` and ``desks.id`` alike)."""
        whens = [(self.is_(cell, "array"), cell.value)]
        if objects:
            whens.append((self.is_(cell, "object"),
                          func.jsonb_build_array(cell.value) if self.pg
                          else func.json_array(cell.value)))
        return self._each(case(*whens, else_=self.empty("[]")), members=False)

    def text(self, cell: _Cell) -> ColumnElement[Any]:
        """The text of a string value."""
        if self.pg:
            return cell.value.op("#>>", return_type=String())(
                cast(literal("{}"), ARRAY(String())))
        return cell.value

    def literal(self, value: Any) -> ColumnElement[Any]:
        """A number or boolean, comparable with a value of its JSON type: jsonb to jsonb
        on PostgreSQL (no cast of a value that may not be a number), the SQL value on SQLite."""
        if self.pg:
            return cast(literal(json.dumps(value)), JSONB)
        if isinstance(value, int) and not -2**63 <= value < 2**63:
            return literal(float(value))
        return literal(value)


def custom_filter(path: CustomPath, node: Compare | Present, resource: Resource,
                  dialect: str) -> Bool:
    """``node`` on the custom attribute ``path`` of the outer row, never SQL NULL."""
    model = User if resource == "User" else Group
    js = _Json(dialect)
    if isinstance(node, Compare) and node.value is None:
        if node.op not in ("eq", "ne"):
            raise invalid(f"null can only be compared with eq or ne ({path.text})")
        found = _exists(js, model, path, lambda cell: _present(js, cell))
        return not_(found) if node.op == "eq" else found
    if isinstance(node, Present):
        return _exists(js, model, path, lambda cell: _present(js, cell))
    check = _comparison(js, node, "eq" if node.op == "ne" else node.op)
    found = _exists(js, model, path, check)
    return not_(found) if node.op == "ne" else found


def _exists(js: _Json, model: type[User] | type[Group], path: CustomPath,
            check: Check) -> Bool:
    """EXISTS a value at ``path`` (an array: one of its elements) for which ``check`` holds."""
    blocks, block = js.members(js.column(model.extension_data))
    attrs, attr = js.members(block)
    stmt = select(literal(1)).select_from(blocks).join(attrs, true())
    where = [fold(blocks.c.key) == fold(literal(path.urn, String())),
             fold(attrs.c.key) == fold(literal(path.attr, String()))]
    cell = attr
    if path.sub is not None:
        objects, obj = js.elements(attr, objects=True)
        subs, cell = js.members(obj)
        stmt = stmt.join(objects, true()).join(subs, true())
        where.append(fold(subs.c.key) == fold(literal(path.sub, String())))
    items, item = js.elements(cell)
    in_array = select(literal(1)).select_from(items).where(check(item)).exists()
    return stmt.where(*where, or_(and_(not_(js.is_(cell, "array")), check(cell)),
                                  in_array)).exists()


def _present(js: _Json, cell: _Cell) -> Bool:
    """RFC 7644 §3.4.2.2 ``pr``: a value that is not null and not empty."""
    return or_(js.is_(cell, "number"), js.is_(cell, "boolean"),
               and_(js.is_(cell, "string"), js.text(cell) != ""),
               and_(js.is_(cell, "object"), cell.value != js.empty("{}")))


def _comparison(js: _Json, node: Compare, op: str) -> Check:
    """The test one JSON value must pass for ``node`` (its ``ne`` given as ``eq``)."""
    value = node.value
    if isinstance(value, bool):
        if op != "eq":
            raise invalid(f"{node.path.text}: true and false compare with eq, ne and pr "
                          f"only (RFC 7644 §3.4.2.2), not {node.op}")
        wanted = "true" if value else "false"
        if js.pg:
            return lambda cell: cell.value == js.literal(value)
        return lambda cell: cell.kind == wanted
    if isinstance(value, int | float):
        if op in ("co", "sw", "ew"):
            raise invalid(f"{node.path.text}: {node.op} needs a quoted string, not a number")
        if not math.isfinite(value):
            raise invalid(f"{node.path.text}: {node.raw or value} is not a finite number")
        operand = js.literal(value)
        return lambda cell: and_(js.is_(cell, "number"),
                                 ordered(cell.value, op, operand, node))
    assert isinstance(value, str)
    rhs = fold(literal(value, String()))
    if op in ("co", "sw", "ew"):
        if value == "":
            return lambda cell: js.is_(cell, "string")
        return lambda cell: and_(js.is_(cell, "string"),
                                 substring(fold(js.text(cell)), rhs, op, js.dialect))
    return lambda cell: and_(js.is_(cell, "string"), ordered(fold(js.text(cell)), op, rhs, node))
