"""SCIM filters (RFC 7644 §3.4.2.2) as SQLAlchemy expressions over the directory models.

Everything is evaluated in the database with bound parameters. caseExact=false strings
compare through lower() on both sides, so ``userName eq`` uses the functional index
uq_users_directory_username. Where attributes live (columns, JSON lists, memberships) is
app.scim.filter_columns; attributes of extension blocks Roster does not know are
app.scim.filter_extensions. Every leaf is null-safe (never SQL NULL), so ``not (...)`` and
``ne`` mean exactly "the positive test does not hold".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    String,
    and_,
    bindparam,
    false,
    literal,
    not_,
    or_,
    true,
)

from app.models.directory import Group, User
from app.scim import dialect as notes_
from app.scim.errors import ScimError
from app.scim.filter_columns import (
    JSON_COLUMNS,
    Bool,
    Collection,
    Field,
    collection,
    columns,
    first_value,
)
from app.scim.filter_extensions import custom_filter, custom_path
from app.scim.filter_operators import compare_instant, datetime_operand, ordered, substring
from app.scim.filter_syntax import (
    Compare,
    Logical,
    Node,
    Not,
    Path,
    Present,
    Resolved,
    Resource,
    ValuePath,
    has_attribute,
    invalid,
    parse_attribute_path,
    parse_filter,
    resolve_attribute,
    resolve_path,
)
from app.scim.schema import ROSTER_USER, Attribute
from app.sql import fold

__all__ = ["FILTER_VALUE", "Field", "PreparedFilter", "SortKey", "invalid_value",
           "prepared_filter", "resolve_attribute", "sort_key", "translate_filter"]

# The bound parameter of a prepared ``attr eq "value"`` filter (see ``prepared_filter``).
FILTER_VALUE = "scim_filter_value"
# ``attr eq "value"`` with a plain quoted string: what Okta and Entra send to find a user or
# group before creating it (userName, externalId, displayName). No escapes, quotes or control
# characters in the value, so it means exactly what it spells; anything else is parsed fully.
_EQ_STRING = re.compile(r'\s*([A-Za-z$][\w$:.-]*)\s+eq\s+"([^"\\\x00-\x1f]*)"\s*')


class _Translator:
    """Walks the filter tree of one resource type and builds the WHERE expression."""

    def __init__(self, resource: Resource, dialect: str, notes: list[str] | None,
                 absent: set[str] | None = None) -> None:
        self.resource = resource
        # A root search's filter (``absent`` given): an attribute this resource type lacks
        # is absent from all its resources, not an error; its path is collected here.
        self.absent = absent
        self.model = User if resource == "User" else Group
        self.dialect = dialect
        self.notes = notes
        self.columns = columns(self.model)
        # Template mode (prepared_filter): string operands become one bound parameter.
        self.template = False
        self.binds = 0
        self.lower_bound = False

    def node(self, node: Node) -> Bool:
        if isinstance(node, Logical):
            parts = (self.node(node.left), self.node(node.right))
            return and_(*parts) if node.op == "and" else or_(*parts)
        if isinstance(node, Not):
            return not_(self.node(node.expr))
        if isinstance(node, ValuePath):
            return self.value_path(node)
        return self.leaf(node)

    def resolve(self, path: Path) -> Resolved:
        resolved = resolve_path(path, self.resource, notes=self.notes)
        if resolved.schema is not None and resolved.schema.id == ROSTER_USER:
            raise invalid(f"{path.text!r} is computed by Roster and cannot be filtered")
        if resolved.leaf.returned == "never":
            raise invalid(f"{path.text!r} is never returned and cannot be filtered")
        return resolved

    def lacks(self, path: Path) -> bool:
        if self.absent is None or has_attribute(path, self.resource):
            return False
        self.absent.add(path.text)
        return True

    def leaf(self, node: Compare | Present) -> Bool:
        custom = custom_path(node.path, self.resource)
        if custom is not None:  # any resource may have it, so it is never absent
            return custom_filter(custom, node, self.resource, self.dialect)
        if self.lacks(node.path):
            # What any comparison gives for a missing value: only ``ne`` holds.
            return true() if isinstance(node, Compare) and node.op == "ne" else false()
        resolved = self.resolve(node.path)
        if resolved.attr.multi_valued:
            values = self.collection(resolved)
            sub = resolved.sub or resolved.attr.sub("value")
            if sub is None:
                if isinstance(node, Present):
                    return values.exists(true())
                raise invalid(f"{resolved.attr.name} has no value: filter on one of its "
                              f"sub-attributes, e.g. {resolved.attr.name}.type")
            return values.exists(self.compare(values.field(sub), node))
        if resolved.attr.type == "complex" and resolved.sub is None:
            if resolved.attr.name == "manager":
                resolved = Resolved(resolved.schema, resolved.attr, resolved.attr.sub("value"))
            elif isinstance(node, Present):
                fields = [self.single(Resolved(resolved.schema, resolved.attr, s))
                          for s in resolved.attr.sub_attributes
                          if f"{resolved.attr.name}.{s.name}" in self.columns]
                return or_(*(self.compare(f, node) for f in fields))
            else:
                raise invalid(f"{resolved.attr.name} is complex: compare one of its "
                              f"sub-attributes, e.g. {resolved.attr.name}."
                              f"{resolved.attr.sub_attributes[0].name}")
        return self.compare(self.single(resolved), node)

    def single(self, resolved: Resolved) -> Field:
        found = self.columns.get(resolved.name)
        if found is None:
            raise invalid(f"{resolved.name!r} cannot be used in a filter")
        column, nullable = found
        manager = resolved.name == "manager.value"
        return Field(column, resolved.leaf, nullable=nullable, lower_ids=manager,
                     indexed=User.manager_id if manager else None)

    def collection(self, resolved: Resolved) -> Collection:
        return collection(resolved.attr, self.resource, self.dialect)

    def value_path(self, node: ValuePath) -> Bool:
        """``attr[filter]`` (RFC 7644 §3.4.2.2 Table 5): all of it holds for one value."""
        if custom_path(node.path, self.resource) is not None:
            raise invalid(f"{node.path.text}[...]: value filters on custom extension "
                          f"attributes are not supported; compare a sub-attribute, e.g. "
                          f"{node.path.text}.value eq \"x\"")
        if self.lacks(node.path):
            return false()
        resolved = self.resolve(node.path)
        if resolved.attr.type != "complex":
            raise invalid(f"{resolved.attr.name} is not complex; '[...]' needs sub-attributes")
        if resolved.attr.multi_valued:
            values = self.collection(resolved)
            field_of: Callable[[Attribute], Field] = values.field
            wrap: Callable[[Bool], Bool] = values.exists
        else:
            def field_of(sub: Attribute) -> Field:
                return self.single(Resolved(resolved.schema, resolved.attr, sub))

            def wrap(predicate: Bool) -> Bool:
                return predicate
        predicate = self.inner(node.filter, resolved.attr, field_of)
        if node.then is not None:
            sub = self.sub_of(resolved.attr, node.then.path.sub or "")
            predicate = and_(predicate, self.compare(field_of(sub), node.then))
        return wrap(predicate)

    def inner(self, node: Node, parent: Attribute, field_of: Callable[[Attribute], Field],
              ) -> Bool:
        if isinstance(node, Logical):
            parts = (self.inner(node.left, parent, field_of),
                     self.inner(node.right, parent, field_of))
            return and_(*parts) if node.op == "and" else or_(*parts)
        if isinstance(node, Not):
            return not_(self.inner(node.expr, parent, field_of))
        if isinstance(node, ValuePath):  # the parser already refuses nesting
            raise invalid("Nested value filters are not allowed")
        if node.path.urn is not None or node.path.sub is not None:
            raise invalid(f"Inside {parent.name}[...] use sub-attribute names such as "
                          f"'value', not {node.path.text!r}")
        return self.compare(field_of(self.sub_of(parent, node.path.attr)), node)

    def sub_of(self, parent: Attribute, name: str) -> Attribute:
        sub = parent.sub(name)
        if sub is None:
            raise invalid(f"Unknown sub-attribute {parent.name}.{name}")
        if sub.name != name and self.notes is not None:
            self.notes.append(notes_.CAPITALISED_ATTRIBUTE)
        return sub

    def compare(self, field: Field, node: Compare | Present) -> Bool:
        """One attribute operator (RFC 7644 Table 3), never SQL NULL."""
        present = field.expr.is_not(None) if field.nullable else true()
        if field.attr.type in ("string", "reference", "binary") and field.is_bool is None:
            present = and_(present, field.expr != "")
        if isinstance(node, Present):
            return present
        if node.value is None:
            if node.op in ("eq", "ne"):
                return not_(present) if node.op == "eq" else present
            raise invalid(f"null can only be compared with eq or ne ({node.path.text})")
        positive = self._positive(field, node, "eq" if node.op == "ne" else node.op)
        guarded = and_(field.expr.is_not(None), positive) if field.nullable else positive
        return not_(guarded) if node.op == "ne" else guarded

    def _positive(self, field: Field, node: Compare, op: str) -> Bool:
        kind = field.attr.type
        if kind == "boolean":
            return self._boolean(field, node, op)
        if kind == "dateTime":
            if op in ("co", "sw", "ew"):
                raise invalid(f"The operator {node.op!r} does not apply to {node.path.text}, "
                              f"a dateTime")
            return compare_instant(field.expr, op, datetime_operand(node), node)
        if kind == "complex":
            raise invalid(f"{node.path.text} is complex: compare a sub-attribute")
        if kind in ("integer", "decimal"):  # pragma: no cover - none in our schemas yet
            raise invalid(f"{node.path.text}: numeric filters are not supported")
        return self._string(field, node, op)

    def _boolean(self, field: Field, node: Compare, op: str) -> Bool:
        value = node.value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            if node.raw is None and self.notes is not None:
                self.notes.append(notes_.STRING_BOOLEAN_IN_FILTER)
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise invalid(f"{node.path.text} is boolean: compare it with true or false")
        if op != "eq":
            raise invalid(f"{node.path.text} is boolean: only eq, ne and pr apply "
                          f"(RFC 7644 §3.4.2.2), not {node.op}")
        if field.is_bool is not None:
            return field.is_bool(value)
        return field.expr == literal(value)

    def _string(self, field: Field, node: Compare, op: str) -> Bool:
        value = node.value
        if isinstance(value, bool):
            raise invalid(f"{node.path.text} is a string: quote the value")
        if not isinstance(value, str):
            # A bare number for a string attribute: Entra sends unquoted ids (issue 5).
            value = node.raw or str(value)
            if self.notes is not None:
                self.notes.append(notes_.UNQUOTED_FILTER_VALUE)
        lhs: ColumnElement[Any] = field.expr
        insensitive = not field.attr.case_exact
        if insensitive and field.lower_ids:
            value, insensitive = value.lower(), False
            self.lower_bound = True
        rhs: ColumnElement[Any] = literal(value, String())
        if self.template:
            rhs = bindparam(FILTER_VALUE, type_=String())
            self.binds += 1
        if insensitive:
            lhs, rhs = fold(lhs), fold(rhs)
        if op in ("co", "sw", "ew"):
            if value == "":
                return true()
            return substring(lhs, rhs, op, self.dialect)
        if op == "eq" and field.indexed is not None and not insensitive:
            return and_(field.indexed == rhs, lhs == rhs)
        return ordered(lhs, op, rhs, node)


def translate_filter(text: str, resource: Resource, *, dialect: str,
                     notes: list[str] | None = None, absent: set[str] | None = None) -> Bool:
    """A SCIM filter as a WHERE expression for ``resource`` (RFC 7644 §3.4.2.2).

    With ``absent`` (a root search), attributes ``resource`` lacks compare as missing
    values instead of failing, and their paths are added to ``absent``.
    """
    return _Translator(resource, dialect, notes, absent).node(parse_filter(text, notes=notes))


@dataclass(frozen=True)
class PreparedFilter:
    """A filter ``attr eq "<any plain string>"`` as one reusable WHERE expression.

    ``where`` binds the value as :data:`FILTER_VALUE`; the statement built on it is the same
    object on every request, so SQLAlchemy finds its compiled form at once instead of
    building, hashing and looking up a new expression tree per lookup.
    """

    where: Bool
    lower: bool  # the value is lower-cased before it is bound (ids compared as lower case)
    notes: tuple[str, ...]  # dialect notes the attribute path gives (capitalisation)

    def value(self, text: str) -> str:
        """The bound value for the string the filter compared with."""
        return text.lower() if self.lower else text


def split_eq_string(text: str) -> tuple[str, str] | None:
    """``(path, value)`` of a plain ``path eq "value"`` filter, else None."""
    found = _EQ_STRING.fullmatch(text)
    return (found.group(1), found.group(2)) if found else None


@functools.lru_cache(maxsize=512)
def prepared_filter(path: str, resource: Resource, dialect: str) -> PreparedFilter | None:
    """The prepared form of ``path eq "..."`` for string attributes; None for any other
    attribute (booleans, dateTimes, errors), which the full translation handles per value.

    Cached per path as written (its capitalisation decides the notes), at most 512 paths.
    """
    notes: list[str] = []
    translator = _Translator(resource, dialect, notes)
    translator.template = True
    try:
        where = translator.node(parse_filter(f'{path} eq "x"', notes=notes))
    except ScimError:
        return None
    if translator.binds != 1:
        return None
    return PreparedFilter(where, translator.lower_bound, tuple(notes))


@dataclass(frozen=True)
class SortKey:
    """What to ORDER BY for a sortBy attribute (RFC 7644 §3.4.2.3)."""

    name: str
    expr: ColumnElement[Any]
    nullable: bool
    type: str


# What a refused sortBy suggests instead: attributes of the resource type asked for.
_SORTABLE: dict[str, str] = {
    "User": "an attribute with a value such as userName, meta.created or emails",
    "Group": "a single-valued attribute such as displayName, externalId or meta.created",
}


def sort_key(sort_by: str | None, resource: Resource, *, dialect: str,
             notes: list[str] | None = None) -> SortKey:
    """The ORDER BY value for sortBy; multi-valued attributes sort by their primary (else
    first) value (RFC 7644 §3.4.2.3), but memberships, which have no first one."""
    model = User if resource == "User" else Group
    if sort_by is None:
        return SortKey("meta.created", model.created_at, False, "dateTime")
    try:
        custom = custom_path(parse_attribute_path(sort_by, "invalidValue"), resource)
    except ScimError:
        custom = None  # resolve_attribute says what is wrong with it
    if custom is not None:
        raise invalid_value(f"sortBy {sort_by!r} is not supported: a custom extension "
                            f"attribute has no schema, so no type to order by; use "
                            f"{_SORTABLE[resource]}")
    resolved = resolve_attribute(sort_by, resource, notes=notes, scim_type="invalidValue")
    if resolved.name in ("emails", "emails.value") and resource == "User":
        # primary_email is the primary (else first) email, already lower-cased.
        return SortKey("emails.value", User.primary_email, True, "string")
    if resolved.attr.name == "manager" and resolved.sub is None:
        resolved = Resolved(resolved.schema, resolved.attr, resolved.attr.sub("value"))
    if resolved.attr.name in JSON_COLUMNS and resource == "User":
        sub = resolved.sub or resolved.attr.sub("value")
        if sub is not None and sub.type in ("string", "reference", "binary"):
            value = first_value(resolved.attr, sub, dialect)
            return SortKey(f"{resolved.attr.name}.{sub.name}",
                           value if sub.case_exact else fold(value), True, "string")
    found = columns(model).get(resolved.name)
    if resolved.attr.multi_valued or found is None or resolved.leaf.returned == "never":
        raise invalid_value(f"sortBy {sort_by!r} is not supported: use "
                            f"{_SORTABLE[resource]}")
    column, nullable = found
    leaf = resolved.leaf
    if leaf.type in ("string", "reference") and not leaf.case_exact:
        column = fold(column)
    return SortKey(resolved.name, column, nullable, leaf.type)


def invalid_value(detail: str) -> ScimError:
    """The 400 invalidValue error (RFC 7644 §3.12, Table 9)."""
    return ScimError(400, detail, "invalidValue")
