"""Normalisation and validation of SCIM attribute values against the schema (RFC 7643 §2, §7).

Pure: no Flask, no database. Used for POST/PUT bodies and for the result of a PATCH.

Decisions (RFC 7643 / 7644 leave them open):
- Attribute names are case-insensitive on input (RFC 7643 §2.1) and come out canonical.
- ``null``, ``""``, ``[]`` and a complex value left with no sub-attributes are "unassigned"
  (RFC 7643 §2.5); Entra sends ``""`` to mean "clear" (note EMPTY_VALUE_CLEARS).
- A multi-valued complex attribute given a single object is wrapped into a list; a
  single-valued complex attribute given a one-element list is unwrapped (Entra's manager),
  and given a bare string becomes ``{"value": ...}`` (note BARE_STRING_MANAGER).
- An element of a multi-valued attribute that has a ``value`` sub-attribute but no value is
  dropped: ``{"type": "work"}`` alone says nothing. Where ``value`` is required (a Group's
  ``members``) such an element is invalidValue: ``{"display": "Ada"}`` names nobody.
- An enterprise attribute at the top level without its URN (``"department"``) goes into its
  block, as filters resolve bare names; a core attribute of the same name would win.
- A ``schemas`` member inside an extension block (``"<urn>": {"schemas": [...], ...}``,
  which some clients send) is ignored, in POST, PUT and PATCH alike (:func:`extension_members`).
- Unknown attributes and sub-attributes of core/enterprise schemas are rejected (400
  invalidValue naming them, RFC 7644 §3.3 allows it). ``urn:`` blocks of schemas we do not
  know are kept as opaque extension data and their URN is added to ``schemas``: Entra sends
  custom extension blocks without listing them. Their unassigned members (null, ``""``,
  ``[]``, ``{}``, RFC 7643 §2.5) are dropped, as a known attribute's are (app.scim.opaque).
- readOnly attributes and sub-attributes sent by the client are ignored (RFC 7643 §2.2).
- canonicalValues are not enforced (RFC 7643 §7 "SHOULD"); IdPs send their own types.
- At most one ``primary: true`` per multi-valued attribute (RFC 7643 §2.4), else invalidValue.
- Elements of one list that are one element (app.scim.elements: the same value and type;
  one without a type and the first with its value) merge, as a PATCH ``add`` merges them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, cast

from app.scim import dialect
from app.scim.elements import merge_elements
from app.scim.errors import ScimError
from app.scim.filter_syntax import schema_of
from app.scim.opaque import add_block, assigned
from app.scim.schema import COMMON, ENTERPRISE, GROUP, ROSTER_ACCESS, USER, Attribute, Schema

ResourceType = Literal["User", "Group"]


@dataclass(frozen=True)
class ResourceSchemas:
    """The core schema and the known extensions of one resource type (RFC 7643 §3)."""

    core: Schema
    extensions: tuple[Schema, ...]
    _by_name: dict[str, Attribute] = field(init=False, repr=False, compare=False)
    _by_urn: dict[str, Schema] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Lookups happen for every attribute of every request: index them once.
        by_name = {a.name.lower(): a for a in (*COMMON, *self.core.attributes)}
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_by_urn", {s.id.lower(): s for s in self.extensions})

    @property
    def resource(self) -> ResourceType:
        """The resource type these schemas describe."""
        return cast(ResourceType, self.core.name)

    def attribute(self, name: str) -> Attribute | None:
        """The core or common attribute called ``name`` (case-insensitive, RFC 7643 §2.1)."""
        return self._by_name.get(name.lower())

    def extension(self, urn: str) -> Schema | None:
        """The known extension schema with this URN (URNs compare case-insensitively)."""
        return self._by_urn.get(urn.lower())

    def split_urn_key(self, key: str) -> tuple[Schema, str] | None:
        """Split ``<urn>:<attr>`` into a known schema (core or extension) and the rest."""
        lowered = key.lower()
        for schema in (self.core, *self.extensions):
            prefix = schema.id.lower() + ":"
            if lowered.startswith(prefix):
                return schema, key[len(prefix):]
        return None


_SCHEMAS: dict[str, ResourceSchemas] = {
    "User": ResourceSchemas(USER, (ENTERPRISE, ROSTER_ACCESS)),
    "Group": ResourceSchemas(GROUP, ()),
}
KNOWN_URNS = {s.id.lower() for s in (USER, ENTERPRISE, ROSTER_ACCESS, GROUP)}
ATTRIBUTE_NAME = re.compile(r"^[A-Za-z$][\w$-]*\Z")


def opaque_parts(text: str, known: ResourceSchemas) -> tuple[str, str] | None:
    """``(block URN, attribute)`` of a path into an extension Roster does not know, split at
    the last colon (RFC 7644 §3.10), for PATCH paths and filters alike.

    The attribute is ``""`` when ``text`` is such a block's own URN: schema URNs end in their
    resource type, as Entra's custom ones do (urn:ietf:params:scim:schemas:extension:Acme:
    2.0:User), so that is not an attribute "User" of "...:2.0". None when ``text`` names no
    such attribute: a known schema's URN or a path into one, fewer than
    ``urn:<namespace>:<name>`` before the attribute, or no attribute name after it.
    """
    urn, _, name = text.rpartition(":")
    if text.lower() in KNOWN_URNS or urn.lower() in KNOWN_URNS:
        return None
    if name.lower() == known.core.name.lower() and urn.count(":") >= 2:
        return text, ""
    if not ATTRIBUTE_NAME.match(name) or urn.count(":") < 2:
        return None
    return urn, name


def schemas_for(resource_type: ResourceType) -> ResourceSchemas:
    """The schemas of a resource type (RFC 7643 §6, /ResourceTypes)."""
    return _SCHEMAS[resource_type]


def note(notes: list[str], name: str) -> None:
    """Record that a dialect normalisation fired, once per request (issue 5 dialect report)."""
    if name not in notes:
        notes.append(name)


def invalid(detail: str) -> ScimError:
    """A 400 invalidValue error (RFC 7644 §3.12 Table 9)."""
    return ScimError(400, detail, "invalidValue")


def _show(value: Any, attr: Attribute | None = None) -> str:
    if attr is not None and attr.returned == "never":
        # A password sent as the wrong type must not come back in the error (nor reach the
        # flight recorder with it): only its JSON type is named.
        return _JSON_TYPES.get(type(value), "a value")
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


_JSON_TYPES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean",
               list: "an array", dict: "an object", type(None): "null"}


def coerce_boolean(value: Any, notes: list[str], *, where: str = "value") -> bool:
    """A JSON boolean, or Entra's "True"/"False" in any case (RFC 7643 §2.3.2, issue 5)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        note(notes, dialect.STRING_BOOLEAN)
        return value.strip().lower() == "true"
    raise invalid(f"Attribute '{where}' must be a boolean, got {_show(value)}")


def _is_datetime(value: str) -> bool:
    if "T" not in value:
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode("".join(value.split()), validate=True)
    except ValueError:  # binascii.Error is one
        return False
    return True


def _simple(attr: Attribute, value: Any, notes: list[str], where: str) -> Any:
    """A simple (non-complex) value checked against its type (RFC 7643 §2.3)."""
    kind = attr.type
    if kind == "boolean":
        return coerce_boolean(value, notes, where=where)
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind == "decimal":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif kind == "dateTime":
        ok = isinstance(value, str) and _is_datetime(value)
    elif kind == "binary":  # base64 (RFC 7643 §2.3.6), e.g. a DER x509 certificate
        ok = isinstance(value, str) and _is_base64(value)
    else:  # string, reference
        ok = isinstance(value, str)
    if not ok:
        raise invalid(f"Attribute '{where}' must be of type {kind}, got {_show(value, attr)}")
    return value


def _complex(attr: Attribute, value: Any, notes: list[str], where: str) -> dict[str, Any] | None:
    """A complex value: sub-attributes canonicalised and checked, readOnly ones dropped."""
    if not isinstance(value, dict):
        raise invalid(f"Attribute '{where}' must be an object, got {_show(value, attr)}")
    out = _normalise_keys(attr.sub, value, notes, f"{where}.")
    if attr.multi_valued and (key := attr.sub("value")) is not None and "value" not in out:
        if key.required and value:
            # A "$ref" alone is not resolved (RFC 7643 §4.2: "value" is the identifier).
            by_ref = "; its '$ref' alone is not read" if "$ref" in out else ""
            raise invalid(f"Each element of '{where}' needs a 'value' (the id it names){by_ref}")
        return None
    return out or None


def _single(attr: Attribute, value: Any, notes: list[str], where: str) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and value == "" and attr.type != "complex":
        note(notes, dialect.EMPTY_VALUE_CLEARS)
        return None
    if attr.type != "complex":
        return _simple(attr, value, notes, where)
    if not attr.multi_valued:
        if isinstance(value, list):
            if not value:
                return None
            if len(value) != 1:
                raise invalid(f"Attribute '{where}' is single-valued, got a list")
            value = value[0]
        if isinstance(value, str) and attr.sub("value") is not None:
            if value == "":
                note(notes, dialect.EMPTY_VALUE_CLEARS)
                return None
            note(notes, dialect.BARE_STRING_MANAGER)
            value = {"value": value}
    return _complex(attr, value, notes, where)


def normalise_value(attr: Attribute, value: Any, *, notes: list[str], where: str,
                    merge: bool = False) -> Any:
    """``value`` checked and canonicalised for ``attr``; None means unassigned (RFC 7643 §2.5).
    With ``merge`` (a resource's list, not a PATCH operation's) the elements of a list are
    taken as if each were added in turn (RFC 7644 §3.5.2.1): one given twice, or without
    its type next to the typed one, is one element (app.scim.elements), also for the rule
    of one primary. A listed removal keeps its elements apart: an untyped one names more."""
    if not attr.multi_valued:
        return _single(attr, value, notes, where)
    if value is None:
        return None
    if isinstance(value, dict) and attr.type == "complex":
        value = [value]
    if not isinstance(value, list):
        raise invalid(f"Attribute '{where}' is multi-valued and must be a list")
    if attr.max_values is not None and len(value) > attr.max_values:
        raise invalid(f"Attribute '{where}' holds at most {attr.max_values} values "
                      f"({len(value)} given)")
    items = [v for v in (_single(attr, item, notes, where) for item in value) if v is not None]
    if merge and attr.type == "complex":
        items = merge_elements(attr, [], items, demote=False)
    check_single_primary(attr, items, where)
    return items or None


def check_single_primary(attr: Attribute, items: list[Any], where: str) -> None:
    """At most one element may carry ``primary: true`` (RFC 7643 §2.4)."""
    if attr.sub("primary") is None:
        return
    if sum(1 for item in items if isinstance(item, dict) and item.get("primary") is True) > 1:
        raise invalid(f"Only one element of '{where}' may be primary")


def normalise_object(attributes: ResourceSchemas | Schema, body: dict[str, Any], *,
                     notes: list[str], where: str = "") -> dict[str, Any]:
    """The attributes of one schema block, canonical and checked; readOnly ones dropped."""
    return _normalise_keys(attributes.attribute, body, notes, where)


def _normalise_keys(lookup: Callable[[str], Attribute | None], body: dict[str, Any],
                    notes: list[str], prefix: str) -> dict[str, Any]:
    """Each key resolved case-insensitively by ``lookup`` and its value normalised."""
    out: dict[str, Any] = {}
    for key, raw in body.items():
        attr = lookup(key)
        if attr is None:
            raise invalid(f"Unknown attribute '{prefix}{key}'")
        if attr.name != key:
            note(notes, dialect.CAPITALISED_ATTRIBUTE)
        if attr.name in out:
            raise invalid(f"Attribute '{prefix}{attr.name}' is given twice")
        if attr.mutability == "readOnly":
            continue
        value = normalise_value(attr, raw, notes=notes, where=f"{prefix}{attr.name}",
                                merge=True)
        if value is not None:
            out[attr.name] = value
    return out


def extension_members(urn: str, raw: Any, notes: list[str]) -> dict[str, Any]:
    """The members of the extension block ``urn`` as sent, without a ``schemas`` of its own.

    RFC 7643 §3 lists a resource's schemas once, at its top level; some clients (scim2-client
    among them) repeat ``schemas`` inside each extension block. It names no attribute and
    says nothing the top level does not, so it is ignored, in any case and whatever it
    holds, as the top-level ``schemas`` of a PATCH value is (note EXTENSION_SCHEMAS). One
    rule for every block, known or not, used by POST and PUT (:func:`normalise_resource`)
    and by a PATCH naming the block (app.scim.patch), so that they cannot disagree again.
    A block sent as ``null`` is unassigned (RFC 7643 §2.5): it has no members.
    """
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid(f"Extension '{urn}' must be an object")
    members = {key: value for key, value in raw.items() if key.lower() != "schemas"}
    if len(members) != len(raw):
        note(notes, dialect.EXTENSION_SCHEMAS)
    return members


def _schemas_list(body: dict[str, Any], known: ResourceSchemas) -> list[str]:
    raw = next((v for k, v in body.items() if isinstance(k, str) and k.lower() == "schemas"), None)
    if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
        raise ScimError(400, "'schemas' must be a non-empty list of schema URNs", "invalidSyntax")
    canonical = []
    for urn in raw:
        schema = known.extension(urn)
        name = known.core.id if urn.lower() == known.core.id.lower() else \
            (schema.id if schema else urn)
        if name not in canonical:
            canonical.append(name)
    if known.core.id not in canonical:
        raise ScimError(400, f"'schemas' must include {known.core.id}", "invalidSyntax")
    return canonical


def normalise_resource(body: Any, resource_type: ResourceType, *,
                       notes: list[str]) -> dict[str, Any]:
    """A POST/PUT body checked against the schemas and made canonical (RFC 7643 §2, §3)."""
    if not isinstance(body, dict):
        raise ScimError(400, "The request body must be a JSON object", "invalidSyntax")
    known = schemas_for(resource_type)
    schemas = _schemas_list(body, known)
    out: dict[str, Any] = {"schemas": schemas}
    core: dict[str, Any] = {}
    blocks: dict[str, dict[str, Any]] = {}
    bare: list[tuple[str, str, Any]] = []  # extension attributes sent without their URN
    for key, raw in body.items():
        lowered = key.lower()
        if not lowered.startswith("urn:"):
            if lowered == "schemas":
                continue
            # A top-level "department" (Microsoft's SCIM tutorial) resolves as in filters.
            owner = None if known.attribute(key) else schema_of(key, resource_type)
            if owner is None:
                core[key] = raw
            else:
                bare.append((owner, key, raw))
            continue
        ext = known.extension(key)
        if ext is not None:
            blocks.setdefault(ext.id, {}).update(extension_members(ext.id, raw, notes))
        elif lowered in KNOWN_URNS:
            raise invalid(f"Schema '{key}' does not apply to {resource_type} resources")
        elif (split := known.split_urn_key(key)) is not None:
            schema, rest = split
            (core if schema is known.core else blocks.setdefault(schema.id, {}))[rest] = raw
        elif kept := assigned(extension_members(key, raw, notes), notes):
            add_block(out, key, kept)  # as sent, but for unassigned members (app.scim.opaque)
    for urn, key, raw in bare:
        block = blocks.setdefault(urn, {})
        if any(k.lower() == key.lower() for k in block):
            raise invalid(f"Attribute '{urn}:{key}' is given twice")
        block[key] = raw
    out.update(normalise_object(known, core, notes=notes))
    for urn, raw_block in blocks.items():
        ext = next(s for s in known.extensions if s.id == urn)
        block = normalise_object(ext, raw_block, notes=notes, where=f"{urn}:")
        if block:
            out[urn] = block
    schemas.extend(k for k in out if k.lower().startswith("urn:") and k not in schemas)
    check_required(out, known)
    return out


def check_required(resource: dict[str, Any], known: ResourceSchemas) -> None:
    """Required attributes must be present (RFC 7643 §7 "required"; 400 invalidValue)."""
    for attr in known.core.attributes:
        if not attr.required:
            continue
        value = resource.get(attr.name)
        if value in (None, []) or (isinstance(value, str) and not value.strip()):
            raise invalid(f"Attribute '{attr.name}' is required")


def validate_resource(resource: dict[str, Any], resource_type: ResourceType) -> None:
    """Raise a ScimError unless ``resource`` is a valid resource (e.g. after a PATCH)."""
    normalise_resource(resource, resource_type, notes=[])
