"""The SCIM PATCH engine (RFC 7644 §3.5.2) over a resource's SCIM JSON: pure, no DB, no Flask.

The caller serialises the stored resource, calls ``apply_patch``, validates the result and
writes it back. Group members are never in the dict (a group may have 50,000): operations on
``members`` come back as ``MemberChange`` values for the caller to apply to named rows only.
Any malformed input raises ScimError before anything is returned, so nothing is written.

Decisions where the RFC is silent or IdPs disagree with it:
- add/replace with a value filter matching nothing creates the element the filter names
  when the filter is an ``eq`` conjunction (Entra: ``Replace emails[type eq "work"].value``
  on a user without a work email); other filters give 400 noTarget (RFC 7644 §3.5.2.3),
  and so does an element that would have no ``value`` where the attribute has one
  (``emails[type eq "home"].primary``): such an element is dropped as saying nothing.
- remove with such a filter matching nothing is 400 noTarget (RFC 7644 §3.5.2.2); removing
  an attribute that is not set is a no-op; ``remove`` without ``path`` is 400 noTarget.
- ``null``, ``""`` and ``{"value": ""}`` as an add/replace value clear the target (Entra).
- Clearing a required attribute (userName, Group displayName) is 400 invalidValue: Table 9
  "a required value was missing".
- replace on a complex attribute (name, manager, a filtered element) merges sub-attributes
  (RFC 7644 §3.5.2.3 "sub-attributes that are not specified ... are left unchanged").
- add to a multi-valued attribute merges into an element that already is the one added
  (app.scim.elements: the same value and type; without a type, the first with its value)
  instead of duplicating it; ``primary: true`` clears primary on the others (RFC 7643 §2.4).
- An attribute of an extension Roster has no schema for is multi-valued when it holds a
  list: ``add`` appends the values it does not hold yet (app.scim.opaque.appended), and
  ``remove`` with a value list removes those (app.scim.opaque.without).
- Removing members that are not in the group is the caller's no-op, not noTarget: IdPs retry.
- A path ``<extension URN>:schemas`` (with or without a ``path``, any op) is ignored, as a
  ``schemas`` member inside a block value is in POST, PUT and PATCH (note EXTENSION_SCHEMAS),
  and so is the path ``schemas``: Roster lists the schemas of the blocks present.
- A path-less value is a partial resource: its ``schemas`` and ``meta`` are ignored, as
  readOnly values in a PUT are (RFC 7644 §3.5.1; Okta and Entra echo them), and its ``id``
  may repeat the resource's (Okta Group Push); another ``id`` (``id`` is caseExact, RFC
  7643 §3.1, so in any other case too) names another resource: 400 mutability, as the path
  ``id`` or ``meta`` is (RFC 7644 §3.5.2: a client MUST NOT modify a readOnly attribute).
- A sub-attribute of a multi-valued attribute without a filter (``emails.type``) names that
  sub-attribute of every element: remove drops it from each, add/replace sets it on each
  (a second ``primary: true`` is 400 invalidValue). With no elements, a ``value`` is
  created as the only element; any other sub-attribute has nothing to go on (noTarget).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from app.db import copy_json
from app.scim import dialect
from app.scim.elements import element_index, merge_elements
from app.scim.errors import ScimError, message_members, require_message_schema
from app.scim.opaque import appended, without
from app.scim.patch_members import MemberChange, member_change
from app.scim.patch_multi import (
    apply_every,
    apply_filtered,
    normalised,
    remove_listed,
    settle_pending,
)
from app.scim.patch_paths import Path, parse_path
from app.scim.schema import PATCH_OP
from app.scim.values import (
    KNOWN_URNS,
    ResourceSchemas,
    ResourceType,
    extension_members,
    invalid,
    note,
    schemas_for,
)

Op = Literal["add", "remove", "replace"]
__all__ = ["MemberChange", "PatchResult", "apply_patch"]


@dataclass(frozen=True)
class PatchResult:
    """The patched resource (a new dict), member changes in order, and what changed."""

    resource: dict[str, Any]
    member_changes: tuple[MemberChange, ...] = ()
    touched: frozenset[str] = field(default_factory=frozenset)


@dataclass
class _Patch:
    known: ResourceSchemas
    resource_type: ResourceType
    resource: dict[str, Any]
    notes: list[str]
    member_changes: list[MemberChange] = field(default_factory=list)
    # The list an ``add`` last merged into, per attribute, and its element index: the next
    # ``add`` to the same list reuses the index (every other operation stores a new list).
    merged: dict[str, tuple[list[Any], dict[Any, int]]] = field(default_factory=dict)
    index: int = 0  # the operation being applied


def apply_patch(resource: dict[str, Any], body: Any, *, resource_type: ResourceType,
                notes: list[str]) -> PatchResult:
    """Apply a PatchOp message to ``resource`` atomically (RFC 7644 §3.5.2)."""
    state = _Patch(schemas_for(resource_type), resource_type, copy_json(resource), notes)
    for index, (op, path, value) in enumerate(_operations(body, notes)):
        state.index = index
        try:
            _apply(state, op, path, value)
        except ScimError as error:
            raise ScimError(error.status, f"Operations[{index}]: {error.detail}",
                            error.scim_type) from None
    settle_pending(state.resource)
    _list_extensions(state.resource)
    touched = _touched(resource, state.resource)
    if state.member_changes:
        touched.add("members")
    return PatchResult(state.resource, tuple(state.member_changes), frozenset(touched))


def _list_extensions(resource: dict[str, Any]) -> None:
    """Every extension block present is listed in ``schemas`` (RFC 7643 §3)."""
    schemas = resource.setdefault("schemas", [])
    if isinstance(schemas, list):
        schemas.extend(key for key in resource
                       if key.lower().startswith("urn:") and key not in schemas)


def _operations(body: Any, notes: list[str]) -> list[tuple[Op, str | None, Any]]:
    """The checked (op, path, value) list of a PatchOp message (RFC 7644 §3.5.2)."""
    if not isinstance(body, dict):
        raise ScimError(400, "A PATCH body must be a JSON object", "invalidSyntax")
    members = message_members(body)
    require_message_schema(members.get("schemas"), PATCH_OP)
    if "id" in members:
        note(notes, dialect.STRAY_ID)
    operations = members.get("operations")
    if not isinstance(operations, list) or not operations:
        raise ScimError(400, "'Operations' must be a non-empty list", "invalidSyntax")
    return [_operation(index, item, notes) for index, item in enumerate(operations)]


def _operation(index: int, item: Any, notes: list[str]) -> tuple[Op, str | None, Any]:
    where = f"Operations[{index}]"
    if not isinstance(item, dict):
        raise ScimError(400, f"{where} must be an object", "invalidSyntax")
    members = message_members(item, f"{where}: ")
    op = members.get("op")
    if not isinstance(op, str) or op.lower() not in ("add", "remove", "replace"):
        raise ScimError(400, f"{where}: 'op' must be add, remove or replace", "invalidSyntax")
    if op != op.lower():
        note(notes, dialect.CAPITALISED_OP)
    if "name" in members:
        note(notes, dialect.OPERATION_NAME)
    path = members.get("path")
    if path is not None and not isinstance(path, str):
        raise ScimError(400, f"{where}: 'path' must be a string", "invalidPath")
    has_value, value = "value" in members, members.get("value")
    path = path if path and path.strip() else None
    if op.lower() != "remove" and not has_value:
        # add and replace "MUST contain a value member" (RFC 7644 §3.5.2.1, §3.5.2.3):
        # without one, a path would be cleared as if the value were null.
        raise ScimError(400, f"{where}: {op} needs a 'value'", "invalidSyntax")
    return op.lower(), path, value  # type: ignore[return-value]


def _apply(state: _Patch, op: Op, path: str | None, value: Any) -> None:
    if path is None:
        if op == "remove":
            raise ScimError(400, "remove requires a path", "noTarget")
        _apply_pathless(state, op, value)
        return
    _apply_target(state, op, _parse(state, path), value)


def _parse(state: _Patch, text: str) -> Path:
    """``text`` resolved against the schemas and the unknown extension blocks the resource
    has now (their URNs in any case, app.scim.patch_paths.parse_path)."""
    blocks: dict[str, str] = {}
    schemas = state.resource.get("schemas")
    for urn in [*state.resource, *(schemas if isinstance(schemas, list) else [])]:
        if isinstance(urn, str) and urn.lower().startswith("urn:") \
                and urn.lower() not in KNOWN_URNS:
            blocks.setdefault(urn.lower(), urn)
    return parse_path(text, state.known, state.notes, blocks)


def _apply_pathless(state: _Patch, op: Op, value: Any) -> None:
    """Each key of the value is a path of its own (RFC 7644 §3.5.2.1, Entra dotted keys)."""
    if not isinstance(value, dict):
        raise invalid(f"{op} without a path needs an object value")
    seen: set[str] = set()
    for key, item in value.items():
        lowered = key.lower()
        if lowered in seen:
            # As in a POST: names are case-insensitive, so title and TITLE are one attribute.
            raise invalid(f"Attribute '{key}' is given twice")
        seen.add(lowered)
        if lowered in ("schemas", "meta"):
            continue  # the envelope Roster maintains, ignored as in a POST or PUT (§3.5.1)
        if lowered == "id":
            if item == state.resource.get("id"):
                continue  # Okta Group Push repeats the id inside the value
            raise ScimError(400, "'id' is readOnly, and the value's is not this resource's "
                                 "(ids are case-exact)", "mutability")
        if lowered == "active":
            note(state.notes, dialect.PATHLESS_ACTIVE)
        target = _parse(state, key)
        if target.attribute is not None and ("." in key or "[" in key or target.urn):
            note(state.notes, dialect.PATHLESS_DOTTED_KEYS)
        _apply_target(state, op, target, item)


def _apply_target(state: _Patch, op: Op, path: Path, value: Any) -> None:
    if path.block_schemas:
        # ``<urn>:schemas`` names the ``schemas`` a block value may carry, which POST, PUT
        # and a PATCH value naming the block ignore (RFC 7643 §3: schemas are listed at the
        # top level only): any op on it is ignored alike, whatever its value. The top-level
        # ``schemas`` lists the blocks present (_list_extensions): ignored as well.
        if path.urn is not None:
            note(state.notes, dialect.EXTENSION_SCHEMAS)
        return
    attr = path.attribute
    if attr is None:
        if path.opaque:
            _apply_opaque(state, op, path, value)
        else:
            _apply_extension_root(state, op, path, value)
        return
    if state.resource_type == "Group" and attr.name == "members" and path.urn is None:
        change = member_change(op, path, value, state.notes)
        if change is not None:
            state.member_changes.append(change)
        return
    for target in (attr, path.sub):
        if target is not None and target.mutability == "readOnly":
            # Name the readOnly part itself: manager.displayName, not the whole manager.
            name = path.label if target is attr else f"{path.label}.{target.name}"
            raise ScimError(400, f"'{name}' is readOnly", "mutability")
    container = _container(state, path)
    if path.filter is not None:
        apply_filtered(op, path, container, value, state.notes, f"Operations[{state.index}]: ")
    elif path.sub is not None and attr.multi_valued:
        apply_every(op, path, container, value, state.notes)
    elif path.sub is not None:
        _apply_sub(state, op, path, container, value)
    else:
        _apply_whole(state, op, path, container, value)
    if path.urn is not None and not container:
        state.resource.pop(path.urn, None)


def _container(state: _Patch, path: Path) -> dict[str, Any]:
    if path.urn is None:
        return state.resource
    block = state.resource.get(path.urn)
    if not isinstance(block, dict):
        block = state.resource[path.urn] = {}
    return block


def _apply_extension_root(state: _Patch, op: Op, path: Path, value: Any) -> None:
    """The path is an extension URN: remove the block, or apply each key of the value; a
    ``null`` value clears the block, as it clears any attribute (RFC 7643 §2.5)."""
    assert path.urn is not None
    ext = state.known.extension(path.urn)
    if ext is not None and all(a.mutability == "readOnly" for a in ext.attributes):
        raise ScimError(400, f"'{path.urn}' is readOnly", "mutability")
    if op == "remove" or value is None:
        state.resource.pop(path.urn, None)
        return
    for key, item in extension_members(path.urn, value, state.notes).items():
        _apply_target(state, op, _parse(state, f"{path.urn}:{key}"), item)


def _apply_opaque(state: _Patch, op: Op, path: Path, value: Any) -> None:
    """An attribute of an extension we have no schema for: stored as sent, under the name
    it already has in any case (RFC 7643 §2.1). One that holds a list is multi-valued, as
    ``emails`` is: ``add`` appends the values it does not hold yet (RFC 7644 §3.5.2.1; a
    value already there, or none, is no change), and ``remove`` with a value list removes
    only those (Entra's legacy removal, as for a core list); otherwise a value replaces
    it, and ``remove`` or an empty value clears it."""
    container = _container(state, path)
    name = next((key for key in container if key.lower() == path.name.lower()), path.name)
    current = container.get(name)
    listed = isinstance(current, list) and value not in (None, "", [])
    if op == "add" and isinstance(current, list):
        if listed:
            container[name] = appended(f"{path.urn}:{name}", current, copy_json(value))
    elif op == "remove" and listed:
        container[name] = without(current, value)
    elif op != "remove" and value not in (None, ""):
        container[name] = copy_json(value)
    else:
        container.pop(name, None)
    if container.get(name) == []:
        container.pop(name)
    if not container:
        state.resource.pop(path.urn or "", None)


def _clear(state: _Patch, path: Path, container: dict[str, Any]) -> None:
    attr = path.attribute
    assert attr is not None
    if attr.required and path.urn is None:
        raise invalid(f"'{attr.name}' is required and cannot be removed")
    if attr.mutability == "immutable" and container.get(attr.name) is not None:
        raise ScimError(400, f"'{path.label}' is immutable", "mutability")
    container.pop(attr.name, None)


def _apply_whole(state: _Patch, op: Op, path: Path, container: dict[str, Any],
                 value: Any) -> None:
    """add/replace/remove of a whole attribute (RFC 7644 §3.5.2.1-3)."""
    attr = path.attribute
    assert attr is not None
    if op == "remove":
        if attr.multi_valued and value not in (None, [], ""):
            remove_listed(path, container, value, state.notes)
        else:
            _clear(state, path, container)
        return
    new = normalised(attr, value, path.label, state.notes)
    current = container.get(attr.name)
    if new is None:
        if op == "replace" or not attr.multi_valued:
            _clear(state, path, container)
        return
    if attr.mutability == "immutable" and current is not None and current != new:
        raise ScimError(400, f"'{path.label}' is immutable", "mutability")
    if attr.multi_valued and op == "add":
        _merge(state, path, container, new)
    elif attr.type == "complex" and not attr.multi_valued and isinstance(current, dict):
        container[attr.name] = {**current, **new}
    else:
        container[attr.name] = new


def _merge(state: _Patch, path: Path, container: dict[str, Any], new: list[Any]) -> None:
    """``add`` to a multi-valued attribute: merge into its list, by the shared index."""
    attr = path.attribute
    assert attr is not None
    current = container.get(attr.name)
    cached = state.merged.get(path.label)
    if cached is not None and current is not None and cached[0] is current:
        index = cached[1]
    else:
        current = list(current or [])
        index = element_index(attr, current)
    container[attr.name] = merge_elements(attr, current, new, index)
    state.merged[path.label] = (current, index)


def _apply_sub(state: _Patch, op: Op, path: Path, container: dict[str, Any],
               value: Any) -> None:
    """A sub-attribute of a single-valued complex attribute (``name.givenName``)."""
    attr, sub = path.attribute, path.sub
    assert attr is not None
    assert sub is not None
    label = f"{path.label}.{sub.name}"
    new = None if op == "remove" else normalised(sub, value, label, state.notes)
    parent = container.get(attr.name)
    parent = dict(parent) if isinstance(parent, dict) else {}
    if new is None:
        parent.pop(sub.name, None)
    else:
        parent[sub.name] = new
    if parent:
        container[attr.name] = parent
    else:
        container.pop(attr.name, None)


def _touched(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """Top-level attributes (``urn:...:attr`` for extensions) whose value changed."""
    touched: set[str] = set()
    for key in set(before) | set(after):
        old, new = before.get(key), after.get(key)
        if old == new or key == "schemas":
            continue
        if key.lower().startswith("urn:") and (isinstance(old, dict) or isinstance(new, dict)):
            old_block = old if isinstance(old, dict) else {}
            new_block = new if isinstance(new, dict) else {}
            touched.update(f"{key}:{name}" for name in set(old_block) | set(new_block)
                           if old_block.get(name) != new_block.get(name))
        else:
            touched.add(key)
    return touched
