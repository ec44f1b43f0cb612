"""SCIM filter syntax (RFC 7644 §3.4.2.2) and attribute paths (RFC 7644 §3.10), without SQL.

Filters are parsed by scim2-filter-parser, with its defects corrected, in
app.scim.filter_parser into the tree of app.scim.filter_ast; this module is what the rest of
app.scim imports: that tree, ``parse_filter``, and attribute paths checked against the schemas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from app.scim import dialect as notes_
from app.scim.errors import ScimError
from app.scim.filter_ast import (
    Compare,
    Logical,
    Node,
    Not,
    Path,
    Present,
    Value,
    ValuePath,
    invalid,
)
from app.scim.filter_parser import parse_filter
from app.scim.schema import (
    COMMON,
    ENTERPRISE,
    GROUP,
    ROSTER_ACCESS,
    USER,
    Attribute,
    Schema,
)

__all__ = ["Compare", "Logical", "Node", "Not", "Path", "Present", "Resolved", "Resource",
           "Value", "ValuePath", "has_attribute", "invalid", "parse_attribute_path",
           "parse_filter", "parse_path", "resolve_attribute", "resolve_path"]

Resource = Literal["User", "Group"]
_NAME = re.compile(r"[A-Za-z$][\w$-]*")


def parse_path(text: str) -> Path:
    """Split ``[urn:]attr[.sub]`` (RFC 7644 §3.10) without checking the schema."""
    urn: str | None = None
    rest = text
    if ":" in text:
        urn, _, rest = text.rpartition(":")
    attr, _, sub = rest.partition(".")
    if not _NAME.fullmatch(attr) or (sub and not _NAME.fullmatch(sub)) or urn == "":
        raise invalid(f"Invalid attribute path {text!r}")
    return Path(urn, attr, sub or None, text)


@dataclass(frozen=True)
class Resolved:
    """An attribute path checked against the schemas: the definitions and canonical names."""

    schema: Schema | None  # None for the common attributes id, externalId, meta
    attr: Attribute
    sub: Attribute | None

    @property
    def name(self) -> str:
        """The canonical dotted name, e.g. ``name.givenName`` or ``manager.value``."""
        return f"{self.attr.name}.{self.sub.name}" if self.sub else self.attr.name

    @property
    def leaf(self) -> Attribute:
        """The attribute compared: the sub-attribute when there is one."""
        return self.sub or self.attr


_SCHEMAS: dict[Resource, tuple[Schema, ...]] = {
    "User": (USER, ENTERPRISE, ROSTER_ACCESS),
    "Group": (GROUP,),
}


def resolve_path(path: Path, resource: Resource, *, notes: list[str] | None = None,
                 scim_type: str = "invalidFilter") -> Resolved:
    """Find a path's definitions, case-insensitively (RFC 7643 §2.1); note capitalisation."""
    candidates = _candidates(path, resource)
    if candidates is None:
        whole = next((sc for sc in _SCHEMAS[resource] if sc.id.lower() == path.text.lower()),
                     None)
        if whole is not None:  # the parser split the schema's own URN at its last colon
            raise ScimError(400, f"{path.text!r} is a schema, not an attribute: name one of "
                                 f"its attributes ({whole.id}:{whole.attributes[0].name})",
                            scim_type)
        raise ScimError(400, f"Unknown schema {path.urn!r} in {path.text!r} for "
                             f"{resource} resources", scim_type)
    if not candidates:
        raise ScimError(400, f"Unknown attribute {path.text!r} for {resource} resources",
                        scim_type)
    schema_found, attr = candidates[0]
    sub = None
    if path.sub is not None:
        sub = attr.sub(path.sub)
        if sub is None:
            raise ScimError(400, f"Unknown sub-attribute {path.text!r}: {attr.name} has "
                                 f"{', '.join(a.name for a in attr.sub_attributes) or 'none'}",
                            scim_type)
    if notes is not None and (attr.name != path.attr or (sub and sub.name != path.sub)):
        notes.append(notes_.CAPITALISED_ATTRIBUTE)
    return Resolved(schema_found, attr, sub)


def _candidates(path: Path, resource: Resource,
                ) -> list[tuple[Schema | None, Attribute]] | None:
    """The definitions ``path`` may name for ``resource`` (None: its URN is no schema of it)."""
    schemas = _SCHEMAS[resource]
    name = path.attr.lower()
    if path.urn is not None:
        schema = next((s for s in schemas if s.id.lower() == path.urn.lower()), None)
        if schema is None:
            return None
        found: list[tuple[Schema | None, Attribute]] = [
            (schema, a) for a in schema.attributes if a.name.lower() == name]
        if schema is schemas[0]:
            found += [(None, a) for a in COMMON if a.name.lower() == name]
        return found
    # Unqualified names resolve in the core schema first, then the extensions.
    found = [(None, a) for a in COMMON if a.name.lower() == name]
    for schema in schemas:
        found += [(schema, a) for a in schema.attributes if a.name.lower() == name]
    return found


def schema_of(name: str, resource: Resource) -> str | None:
    """The URN of the schema an unqualified attribute name resolves to for ``resource``, as
    filters and sortBy resolve it (core and common attributes first, then the extensions);
    None when no schema of ``resource`` has it. ``attributes`` selects by the same rule."""
    found = _candidates(Path(None, name, None, name), resource) or []
    if not found:
        return None
    schema = found[0][0]
    return (schema or _SCHEMAS[resource][0]).id


def has_attribute(path: Path, resource: Resource) -> bool:
    """Whether ``resource``'s schemas define the attribute ``path`` names (its sub-attribute
    is not checked): a root search treats one they lack as absent (RFC 7644 §3.4.3)."""
    return bool(_candidates(path, resource))


def resolve_attribute(text: str, resource: Resource, *, notes: list[str] | None = None,
                      scim_type: str = "invalidFilter") -> Resolved:
    """Resolve an attribute path string (RFC 7644 §3.10) for ``attributes``, sortBy, filters."""
    return resolve_path(parse_attribute_path(text, scim_type), resource, notes=notes,
                        scim_type=scim_type)


def parse_attribute_path(text: str, scim_type: str = "invalidFilter") -> Path:
    """``parse_path`` of a parameter's text (surrounding space ignored), its error answered
    with ``scim_type`` (``invalidValue`` for sortBy)."""
    try:
        return parse_path(text.strip())
    except ScimError as exc:
        raise ScimError(400, exc.detail, scim_type) from None
