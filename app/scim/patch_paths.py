"""PATCH paths and their value filters (RFC 7644 §3.5.2 PATH ABNF, §3.4.2.2 valFilter): pure.

``parse_path`` resolves a path against the resource type's schemas; value filters inside
brackets are parsed here and evaluated in Python against the elements of one multi-valued
attribute, honouring caseExact from the schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.scim import dialect, filter_syntax
from app.scim.errors import ScimError
from app.scim.schema import Attribute, Schema
from app.scim.values import (
    ResourceSchemas,
    coerce_boolean,
    note,
    opaque_parts,
)

_PATH = re.compile(r"^([A-Za-z$][\w$-]*)(?:\[(.*)\])?(?:\.([A-Za-z$][\w$-]*))?\Z", re.DOTALL)


def invalid_path(detail: str) -> ScimError:
    """A 400 invalidPath error (RFC 7644 §3.12 Table 9)."""
    return ScimError(400, detail, "invalidPath")


def invalid_filter(detail: str) -> ScimError:
    """A 400 invalidFilter error (RFC 7644 §3.12 Table 9)."""
    return ScimError(400, detail, "invalidFilter")


@dataclass(frozen=True)
class Compare:
    """``attr op value`` on one sub-attribute (RFC 7644 §3.4.2.2)."""

    attribute: Attribute
    op: str
    value: Any = None


@dataclass(frozen=True)
class Logical:
    """``and`` / ``or`` of two filters, or ``not`` of one (``right`` is None)."""

    op: str
    left: Filter
    right: Filter | None = None


Filter = Compare | Logical


@dataclass(frozen=True)
class Path:
    """A resolved PATCH path: the attribute, in which block, with an optional filter and sub.

    ``urn`` is None for core attributes; ``attribute`` is None for the whole extension block
    (path = the extension URN) and for attributes of opaque (unknown) extensions.
    ``block_schemas``: the path is ``<extension URN>:schemas``, the ``schemas`` member some
    clients repeat inside a block, which names no attribute (app.scim.values.extension_members),
    or the resource's own ``schemas`` (``urn`` None), which Roster maintains.
    """

    urn: str | None
    name: str
    attribute: Attribute | None
    filter: Filter | None = None
    sub: Attribute | None = None
    opaque: bool = False
    block_schemas: bool = False

    @property
    def label(self) -> str:
        """The path as the client would recognise it, for error details."""
        return f"{self.urn}:{self.name}" if self.urn else self.name


def parse_path(text: str, known: ResourceSchemas, notes: list[str],
               blocks: Mapping[str, str] | None = None) -> Path:
    """Resolve ``text`` (attrPath / valuePath [subAttr], RFC 7644 §3.5.2) or raise invalidPath.

    ``blocks`` maps the lower-cased URNs of the unknown extensions the resource already has
    (its ``urn:`` keys and ``schemas``) to their stored spelling: such a URN is that block,
    whatever its last segment, and a path into it in another case lands in the same block.
    """
    text = text.strip()
    urn: str | None = None
    schema: ResourceSchemas | Schema = known
    if text.lower().startswith("urn:"):
        ext = known.extension(text)
        if ext is not None:
            return Path(urn=ext.id, name="", attribute=None)
        split = known.split_urn_key(text)
        if split is None:
            return _opaque_path(text, known, blocks or {})
        found, text = split
        if found is not known.core:
            if text.lower() == "schemas":
                return Path(urn=found.id, name=text, attribute=None, block_schemas=True)
            urn, schema = found.id, found
    match = _PATH.match(text)
    if match is None:
        raise invalid_path(f"Malformed path '{text}'")
    name, filter_text, sub_name = match.groups()
    if schema is known and name.lower() == "schemas" and filter_text is sub_name is None:
        # The resource's own ``schemas``: Roster lists the schemas of the blocks present
        # (RFC 7643 §3), so a path naming it is ignored, as the key in a path-less value is.
        return Path(urn=None, name="schemas", attribute=None, block_schemas=True)
    attr = schema.attribute(name)
    if attr is None and schema is known:
        # An extension attribute named without its URN (``manager``, as Microsoft's SCIM
        # tutorial sends it): resolved as filters and ``attributes`` resolve it.
        ext = known.extension(filter_syntax.schema_of(name, known.resource) or "")
        if ext is not None:
            urn, attr = ext.id, ext.attribute(name)
    if attr is None:
        raise invalid_path(f"Unknown attribute '{name}'")
    if attr.name != name:
        note(notes, dialect.CAPITALISED_ATTRIBUTE)
    value_filter = None
    if filter_text is not None:
        if not attr.multi_valued:
            raise invalid_path(f"'{attr.name}' is single-valued and takes no filter")
        value_filter = parse_filter(filter_text, attr, notes)
    sub = None
    if sub_name is not None:
        # ``emails.type`` without a filter is an attrPath too (RFC 7644 §3.5.2): it names
        # that sub-attribute of every element (app.scim.patch_multi.apply_every).
        if attr.type != "complex":
            raise invalid_path(f"'{attr.name}.{sub_name}' is not a valid path")
        sub = attr.sub(sub_name)
        if sub is None:
            raise invalid_path(f"Unknown sub-attribute '{attr.name}.{sub_name}'")
        if sub.name != sub_name:
            note(notes, dialect.CAPITALISED_ATTRIBUTE)
    return Path(urn=urn, name=attr.name, attribute=attr, filter=value_filter, sub=sub)


def _opaque_path(text: str, known: ResourceSchemas, blocks: Mapping[str, str]) -> Path:
    """An attribute of an extension we do not know (Entra custom extensions), kept as sent."""
    if text.lower() in blocks:
        # A block the resource has: Okta's custom namespaces need not end in "User"
        # (urn:okta:acme_app:1.0:user:custom), so its URN is not taken for an attribute
        # "custom" of a block "urn:okta:acme_app:1.0:user".
        return Path(urn=blocks[text.lower()], name="", attribute=None)
    parts = opaque_parts(text, known)
    if parts is None:
        attribute = text.split("[", 1)[0].rpartition(":")[2]
        if "[" in text or "." in attribute:
            # Filters read such attributes (app.scim.filter_extensions); PATCH writes them
            # whole, having no schema to tell a sub-attribute's or an element's type.
            raise invalid_path(f"'{text}': an attribute of a custom extension is written "
                               "whole (<urn>:<attribute>), without a filter or sub-attribute")
        raise invalid_path(f"Unknown schema in path '{text}'")
    urn, name = parts
    if not name:
        # The extension's own URN (opaque_parts): the whole block.
        return Path(urn=urn, name="", attribute=None)
    if name.lower() == "schemas":
        return Path(urn=blocks.get(urn.lower(), urn), name=name, attribute=None,
                    block_schemas=True)
    return Path(urn=blocks.get(urn.lower(), urn), name=name, attribute=None, opaque=True)


def parse_filter(text: str, attr: Attribute, notes: list[str]) -> Filter:
    """Parse a valFilter over the sub-attributes of ``attr`` (RFC 7644 §3.4.2.2).

    The grammar is the list filters' (app.scim.filter_parser, on scim2-filter-parser); here
    every path must name a simple sub-attribute of ``attr``, and the tree is evaluated
    against one resource's values in Python rather than translated to SQL.
    """
    return _convert(filter_syntax.parse_filter(text, notes=notes), attr, notes)


def _convert(node: filter_syntax.Node, attr: Attribute, notes: list[str]) -> Filter:
    if isinstance(node, filter_syntax.Logical):
        return Logical(node.op, _convert(node.left, attr, notes),
                       _convert(node.right, attr, notes))
    if isinstance(node, filter_syntax.Not):
        return Logical("not", _convert(node.expr, attr, notes))
    if isinstance(node, filter_syntax.ValuePath):
        raise invalid_filter(f"A filter inside '{attr.name}[...]' cannot nest another")
    sub = attr.sub(node.path.attr) if node.path.urn is None and node.path.sub is None else None
    if sub is None or sub.type == "complex":
        raise invalid_filter(f"Unknown attribute '{attr.name}.{node.path.text}' in filter")
    if isinstance(node, filter_syntax.Present):
        return Compare(sub, "pr")
    return Compare(sub, node.op, _literal(node.value, sub, node.op, notes))


def _literal(value: Any, sub: Attribute, op: str, notes: list[str]) -> Any:
    """A compValue checked against its sub-attribute's type."""
    if sub.type == "boolean":
        node_is_string = isinstance(value, str)
        if op not in ("eq", "ne"):
            raise invalid_filter(f"'{op}' does not apply to boolean '{sub.name}'")
        try:
            value = coerce_boolean(value, [], where=sub.name)
        except ScimError:
            raise invalid_filter(f"'{sub.name}' compares with true or false") from None
        if node_is_string:
            # roles[primary eq "True"].value is an Entra mapping's name, sent as such in
            # both dialects: not the legacy dialect's string values (app/scim/dialect.py).
            note(notes, dialect.STRING_BOOLEAN_IN_FILTER)
    elif op in ("co", "sw", "ew") and not isinstance(value, str):
        raise invalid_filter(f"'{op}' needs a string value")
    return value


def matches(node: Filter, element: dict[str, Any]) -> bool:
    """Whether one element of a multi-valued attribute satisfies the filter."""
    if isinstance(node, Logical):
        if node.op == "not":
            return not matches(node.left, element)
        assert node.right is not None
        if node.op == "and":
            return matches(node.left, element) and matches(node.right, element)
        return matches(node.left, element) or matches(node.right, element)
    actual = element.get(node.attribute.name)
    if node.op == "pr":
        return actual not in (None, "", [])
    if node.op == "ne":
        return not _compare(node.attribute, "eq", actual, node.value)
    return _compare(node.attribute, node.op, actual, node.value)


def _compare(attr: Attribute, op: str, actual: Any, wanted: Any) -> bool:
    if isinstance(actual, str) and isinstance(wanted, str) and not attr.case_exact:
        actual, wanted = actual.lower(), wanted.lower()
    if op == "eq":
        return actual == wanted
    if not isinstance(actual, type(wanted)) and not (
            isinstance(actual, int | float) and isinstance(wanted, int | float)):
        return False
    if op == "co":
        return wanted in actual
    if op == "sw":
        return actual.startswith(wanted)
    if op == "ew":
        return actual.endswith(wanted)
    try:
        return {"gt": actual > wanted, "ge": actual >= wanted,
                "lt": actual < wanted, "le": actual <= wanted}[op]
    except TypeError:
        return False


def equalities(node: Filter) -> dict[str, Any] | None:
    """The sub-attribute values an ``eq``-only conjunction pins down, else None.

    Used to create the element a filter names when nothing matches: Entra replaces
    ``emails[type eq "work"].value`` on users who have no work email yet.
    """
    if isinstance(node, Compare):
        return {node.attribute.name: node.value} if node.op == "eq" else None
    if node.op != "and" or node.right is None:
        return None
    left, right = equalities(node.left), equalities(node.right)
    if left is None or right is None:
        return None
    return {**left, **right}


def member_ids(node: Filter) -> tuple[str, ...] | None:
    """The member ids named by a ``members[value eq ...]`` filter (``or`` unions, ``and``
    intersects); None for every member. ``type eq "User"`` holds for every member (groups
    do not nest; caseExact false, RFC 7643 §8.7.1) and any other ``type`` for none, as the
    same filter reads in a query. Anything else is invalidFilter: members are never loaded.
    """
    if isinstance(node, Compare):
        if node.op == "eq" and isinstance(node.value, str):
            if node.attribute.name == "value":
                return (node.value.lower(),)  # caseExact false, as groups.member_ids reads it
            if node.attribute.name == "type":
                return None if node.value.lower() == "user" else ()
    elif node.op in ("and", "or") and node.right is not None:
        left, right = member_ids(node.left), member_ids(node.right)
        if node.op == "or":
            return None if left is None or right is None else tuple(dict.fromkeys(left + right))
        if left is None or right is None:
            return right if left is None else left
        return tuple(i for i in left if i in right)
    raise invalid_filter('A members filter may only combine value eq "<id>" and '
                         'type eq "User" with and/or')
