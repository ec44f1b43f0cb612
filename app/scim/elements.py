"""When two elements of a multi-valued attribute are one (RFC 7644 §3.5.2.1, RFC 7643 §2.4):
pure, no Flask, no database.

An ``add`` to a multi-valued attribute appends its values "unless the value already exists"
(RFC 7644 §3.5.2.1). An element already exists when an element of the list has its
``value`` and ``type`` (each compared in any case where the schema says caseExact false,
RFC 7643 §4.1.2, as filters compare them). An element without a ``type`` says nothing about
one: it is the first element with its ``value``, whatever that one's type
(``{"value": "ada@acme.example"}`` added to a user whose work email it is, is that work
email), and a typed element is an element without a type that has its ``value``. Equal
elements merge (the later one's sub-attributes win), so ``primary`` stays where it was
unless the later one says otherwise. Elements of an attribute without a ``value``
(addresses) are one when they are equal as a whole.

Used by a PATCH ``add`` (app.scim.patch_multi) and for the list of a POST or PUT body
(app.scim.values), which is taken as if each element were added to an empty list.
"""

from __future__ import annotations

from typing import Any

from app.scim.schema import Attribute

# Index entries: ("value", value, type) for each element (type None when it has none),
# ("any", value) for the first element with each value, a frozen element otherwise.
_ANY = "any"


def element_key(attr: Attribute, element: dict[str, Any]) -> Any:
    """What makes two elements the same: value and type (each caseExact-aware); elements of an
    attribute without a ``value`` compare whole. Hashable, so merging is one dict lookup."""
    key = attr.sub("value")
    if key is None:
        return _frozen(element)
    value, kind = element.get("value"), element.get("type")
    if isinstance(value, str) and not key.case_exact:
        value = value.lower()
    kind_attr = attr.sub("type")
    if isinstance(kind, str) and kind_attr is not None and not kind_attr.case_exact:
        kind = kind.lower()  # caseExact false (RFC 7643 §4.1.2), as filters compare it
    return ("value", _frozen(value), _frozen(kind))


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a JSON value (equal values give equal stand-ins)."""
    if isinstance(value, dict):
        return ("{", tuple(sorted((k, _frozen(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("[", tuple(_frozen(v) for v in value))
    if isinstance(value, bool):
        return ("b", value)  # True == 1 in Python; JSON keeps them apart
    return value


def _register(index: dict[Any, int], key: Any, position: int) -> None:
    index.setdefault(key, position)
    if isinstance(key, tuple) and key[0] == "value":
        index.setdefault((_ANY, key[1]), position)


def element_index(attr: Attribute, elements: list[Any]) -> dict[Any, int]:
    """Each element's keys to its (first) position, for :func:`merge_elements`."""
    index: dict[Any, int] = {}
    for position, element in enumerate(elements):
        if isinstance(element, dict):
            _register(index, element_key(attr, element), position)
    return index


def _existing(index: dict[Any, int], key: Any) -> int | None:
    """The position of the element that ``key``'s element already is, if any."""
    found = index.get(key)
    if found is not None or not (isinstance(key, tuple) and key[0] == "value"):
        return found
    _, value, kind = key
    if kind is None:
        return index.get((_ANY, value))  # no type: the first element with this value
    return index.get(("value", value, None))  # typed: an element with this value, untyped


def merge_elements(attr: Attribute, current: list[Any], added: list[Any],
                   index: dict[Any, int] | None = None, *, demote: bool = True) -> list[Any]:
    """Append new elements to ``current`` (in place), merging those that already exist; with
    ``demote`` a new primary demotes the others (a PATCH; a POST or PUT body instead keeps
    its rule of one primary, checked after). ``index`` (:func:`element_index` of
    ``current``) is kept up to date, so the operations of one PATCH may share it: a PATCH
    may add thousands of elements, in one operation or in thousands, and comparing each
    with each took minutes."""
    if index is None:
        index = element_index(attr, current)
    primary = None
    for element in added:
        key = element_key(attr, element)
        same = _existing(index, key)
        if same is None:
            current.append(element)
            same = len(current) - 1
            _register(index, key, same)
        else:
            before = element_key(attr, current[same])
            current[same] = {**current[same], **element}
            after = element_key(attr, current[same])
            if after != before:  # an untyped element got its type: found by it from now on
                if index.get(before) == same:
                    del index[before]
                _register(index, after, same)
        if element.get("primary") is True:
            primary = same
    if primary is not None and demote:
        demote_others(current, primary)
        if attr.sub("value") is None:
            # Whole elements are the keys here (addresses): a demoted one changed its key.
            index.clear()
            index.update(element_index(attr, current))
    return current


def demote_others(elements: list[Any], keep: int) -> None:
    """Only one primary (RFC 7643 §2.4): the element just written wins."""
    for index, element in enumerate(elements):
        if index != keep and isinstance(element, dict) and element.get("primary") is True:
            element["primary"] = False
