"""PATCH on multi-valued attributes (RFC 7644 §3.5.2, RFC 7643 §2.4): pure helpers.

Removal of listed elements, value-path targets ``attr[filter]`` / ``attr[filter].sub``
evaluated against the elements in Python, and ``attr.sub`` on every element. Appending with
merge of equal elements is app.scim.elements.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from app.scim import dialect
from app.scim.elements import demote_others, element_key
from app.scim.errors import ScimError
from app.scim.patch_paths import Path, equalities, matches
from app.scim.schema import Attribute
from app.scim.values import check_single_primary, normalise_value, note


def normalised(attr: Attribute, value: Any, label: str, notes: list[str]) -> Any:
    """An operation value checked for ``attr``; None (also for ``null``) clears the target."""
    if value is None:
        note(notes, dialect.EMPTY_VALUE_CLEARS)
    return normalise_value(attr, value, notes=notes, where=label)


def remove_listed(path: Path, container: dict[str, Any], value: Any,
                  notes: list[str]) -> None:
    """remove on a multi-valued attribute with a value: only the listed elements go
    (RFC 7644 §3.5.2.2 has no value for remove; this is Entra's legacy removal shape).
    An element is listed by its ``value`` and, where the listed one gives it, ``type``;
    elements of an attribute without a ``value`` (addresses) are listed whole."""
    attr = path.attribute
    assert attr is not None
    listed = [e for e in normalise_value(attr, value, notes=notes, where=path.label) or []
              if isinstance(e, dict)]
    if attr.sub("value") is None:
        gone = {element_key(attr, e) for e in listed}
        kept = [e for e in container.get(attr.name) or []
                if not (isinstance(e, dict) and element_key(attr, e) in gone)]
    else:
        # Named by value, and by type only where the listed element gives one: Entra
        # creates roles typed and lists them for removal by value alone (its PATCH elements
        # carry a value only); display or primary in a listed element does not narrow it.
        named = {element_key(attr, {"value": e.get("value"), "type": e.get("type")})
                 for e in listed if e.get("type") is not None}
        untyped = {element_key(attr, {"value": e.get("value")})
                   for e in listed if e.get("type") is None}
        kept = [e for e in container.get(attr.name) or []
                if not (isinstance(e, dict) and (
                    element_key(attr, e) in named
                    or element_key(attr, {"value": e.get("value")}) in untyped))]
    if kept:
        container[attr.name] = kept
    else:
        container.pop(attr.name, None)


# Marks an element created without its ``value`` until the end of the PATCH (the key is
# no attribute name: those are checked against the schema). Its value is the error if the
# value never comes.
PENDING = "\x00pending"


def apply_filtered(op: str, path: Path, container: dict[str, Any], value: Any,
                   notes: list[str], where: str = "") -> None:
    """A value-path target ``attr[filter]`` or ``attr[filter].sub`` (RFC 7644 §3.5.2).
    ``where`` names the operation, for an element created without a value."""
    attr, sub, value_filter = path.attribute, path.sub, path.filter
    assert attr is not None
    assert value_filter is not None
    elements = [e for e in container.get(attr.name) or [] if isinstance(e, dict)]
    hits = [i for i, e in enumerate(elements) if matches(value_filter, e)]
    label = f"{path.label}.{sub.name}" if sub else path.label
    if op == "remove":
        if not hits:
            raise ScimError(400, f"No value matches '{label}'", "noTarget")
        new = None
    else:
        target = sub or dataclasses.replace(attr, multi_valued=False)
        new = normalised(target, value, label, notes)
    if new is None:
        for i in hits:
            if sub is None:
                elements[i] = {}
            else:
                elements[i].pop(sub.name, None)
    elif hits:
        for i in hits:
            elements[i] = {**elements[i], **({sub.name: new} if sub else new)}
    else:
        elements.append(_created(attr, path, {sub.name: new} if sub else new, label, where))
        hits = [len(elements) - 1]
    written = [i for i in hits if elements[i].get("primary") is True] if new is not None else []
    if len(written) == 1:
        demote_others(elements, written[0])
    _store_elements(attr, container, elements, path.label)


def _created(attr: Attribute, path: Path, written: dict[str, Any], label: str,
             where: str) -> dict[str, Any]:
    """The element an add/replace whose ``eq`` filter matched nothing names (RFC 7644 §3.5.2):
    the filter's values plus the written ones. One that would have no ``value`` where the
    attribute has one (``emails[type eq "home"].primary``) waits for a later operation of
    the same PATCH to give it one (Entra sends ``roles[primary eq "True"].display`` before
    ``.value``; a PATCH is atomic, RFC 7644 §3.5.2); without, it is noTarget
    (:func:`settle_pending`): it would be dropped as saying nothing (app.scim.values), and
    a silent 200 would still have demoted the user's primary (RFC 7643 §2.4)."""
    assert path.filter is not None
    seed = equalities(path.filter)
    if seed is None:
        raise ScimError(400, f"No value matches '{label}'", "noTarget")
    element = {**seed, **written}
    if attr.sub("value") is not None and element.get("value") in (None, ""):
        element[PENDING] = (f"{where}No value matches '{label}', and an element created for "
                            "it would have no 'value': add the value in the same PATCH, or "
                            "with it")
    return element


def settle_pending(resource: dict[str, Any]) -> None:
    """After the last operation: an element created without a ``value`` has one now, or
    the PATCH is 400 noTarget (:func:`_created`)."""
    for elements in resource.values():
        if not isinstance(elements, list):
            continue
        for element in elements:
            if isinstance(element, dict) and PENDING in element:
                detail = element.pop(PENDING)
                if element.get("value") in (None, ""):
                    raise ScimError(400, detail, "noTarget")


def apply_every(op: str, path: Path, container: dict[str, Any], value: Any,
                notes: list[str]) -> None:
    """``attr.sub`` without a filter (RFC 7644 §3.5.2 attrPath, e.g. ``emails.type``): the
    sub-attribute of every element, as a filter matching every element would name it."""
    attr, sub = path.attribute, path.sub
    assert attr is not None
    assert sub is not None
    elements = [e for e in container.get(attr.name) or [] if isinstance(e, dict)]
    label = f"{path.label}.{sub.name}"
    new = None if op == "remove" else normalised(sub, value, label, notes)
    if new is None:
        elements = [{k: v for k, v in e.items() if k != sub.name} for e in elements]
    elif elements:
        elements = [{**e, sub.name: new} for e in elements]
    elif sub.name == "value" or attr.sub("value") is None:
        elements = [{sub.name: new}]
    else:
        raise ScimError(400, f"'{path.label}' has no element to set '{sub.name}' on",
                        "noTarget")
    _store_elements(attr, container, elements, path.label)


def _store_elements(attr: Attribute, container: dict[str, Any], elements: list[Any],
                    label: str) -> None:
    """Drop emptied elements (and those left without a value), then store the list."""
    needs_value = attr.sub("value") is not None
    kept = [e for e in elements if e and (not needs_value or PENDING in e
                                           or e.get("value") not in (None, ""))]
    check_single_primary(attr, kept, label)
    if kept:
        container[attr.name] = kept
    else:
        container.pop(attr.name, None)
