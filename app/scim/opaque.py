"""Extension blocks Roster has no schema for (Entra's custom attributes, Okta's custom
namespaces), kept as sent but for what RFC 7643 §2.5 calls unassigned. Pure, but for a log line.

- ``null``, ``[]`` and a complex value with no members are unassigned (RFC 7643 §2.5), and so
  is ``""``, as for every attribute Roster knows (Entra's "clear", note EMPTY_VALUE_CLEARS):
  such a member is dropped, at any depth, from a POST, PUT or PATCH, and a block left with
  no members is no block (nor listed in ``schemas``). Roster leaves unassigned attributes out
  of every resource it returns, so a block of only ``{"costCenter": null}`` is no block,
  with ``attributes``/``excludedAttributes`` (RFC 7644 §3.4.2.5) or without.
- A row's stored ``extension_data`` is read through the same rule (rows written before it),
  and must be an object of ``urn:`` keys (not a schema Roster knows) to objects. Anything else
  (a hand-edited database, an old bug) is left out of the resource, with one warning per row
  naming only its JSON type, so that a read never fails; the next PUT, or PATCH that changes
  the resource, writes the column anew from what was shown.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from app.scim import dialect
from app.scim.errors import ScimError
from app.scim.schema import MAX_VALUES, SCHEMAS

log = logging.getLogger(__name__)
_KNOWN = frozenset(urn.lower() for urn in SCHEMAS)
_WARNED: set[str] = set()  # rows already warned about in this process (bounded below)
_WARNED_LIMIT = 1000
_JSON_TYPES = {str: "string", int: "number", float: "number", bool: "boolean",
               list: "array", dict: "object", type(None): "null"}


def assigned(value: Any, notes: list[str] | None = None) -> Any:
    """``value`` without its unassigned members at any depth; None when nothing is left
    (RFC 7643 §2.5). ``notes`` gets EMPTY_VALUE_CLEARS when a ``""`` was dropped."""
    if value is None:
        return None
    if isinstance(value, str):
        if value == "":
            if notes is not None and dialect.EMPTY_VALUE_CLEARS not in notes:
                notes.append(dialect.EMPTY_VALUE_CLEARS)
            return None
        return value
    if isinstance(value, dict):
        kept = {key: item for key, item in ((k, assigned(v, notes)) for k, v in value.items())
                if item is not None}
        return kept or None
    if isinstance(value, list):
        items = [item for item in (assigned(v, notes) for v in value) if item is not None]
        return items or None
    return value


def appended(label: str, current: list[Any], value: Any) -> list[Any]:
    """A PATCH ``add`` to the list ``current`` (RFC 7644 §3.5.2.1): the values of ``value``
    (a list, or one value) that it does not hold yet, compared as JSON ("If the target
    location already contains the value specified, no changes SHOULD be made"), appended.
    At most MAX_VALUES elements, as a known multi-valued attribute: else 400 invalidValue."""
    added, seen = list(current), {_key(item) for item in current}
    for item in value if isinstance(value, list) else [value]:
        key = _key(item)
        if key in seen:
            continue
        if len(added) >= MAX_VALUES:
            raise ScimError(400, f"Attribute '{label}' holds at most {MAX_VALUES} values",
                            "invalidValue")
        seen.add(key)
        added.append(item)
    return added


def without(current: list[Any], listed: Any) -> list[Any]:
    """``current`` less the values of ``listed`` (a list, or one value): a PATCH ``remove``
    with a value, Entra's legacy shape (RFC 7644 §3.5.2.2 has no value for remove). An
    object listed names the objects holding its members (``{"value": "x"}`` names
    ``{"value": "x", "type": "work"}``), as a core list's elements are named by the
    sub-attributes the listed one gives; any other value names the values equal to it.
    At most MAX_VALUES listed, as for a core list: else 400 invalidValue."""
    items = listed if isinstance(listed, list) else [listed]
    if len(items) > MAX_VALUES:  # each element is compared with each object listed
        raise ScimError(400, f"A remove lists at most {MAX_VALUES} values ({len(items)} "
                             "given)", "invalidValue")
    keys = {_key(item) for item in items}
    objects = [item for item in items if isinstance(item, dict) and item]

    def named(element: Any) -> bool:
        return _key(element) in keys or (isinstance(element, dict) and any(
            item.keys() <= element.keys()
            and all(_key(element[k]) == _key(v) for k, v in item.items())
            for item in objects))

    return [element for element in current if not named(element)]


def _key(value: Any) -> str:
    """``value`` as JSON with sorted keys: equal values, equal keys."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def add_block(resource: dict[str, Any], urn: str, members: dict[str, Any]) -> None:
    """Put the block ``urn`` into ``resource``: one block per URN in any case, as filters and
    PATCH paths read them (two spellings were two blocks, both listed in ``schemas``). A
    second spelling adds its members to the first's; a member in both is given twice."""
    first = next((key for key in resource if key.lower() == urn.lower()), None)
    if first is None:
        resource[urn] = members
        return
    block = resource[first]
    for name, value in members.items():
        if any(key.lower() == name.lower() for key in block):
            raise ScimError(400, f"Attribute '{first}:{name}' is given twice", "invalidValue")
        block[name] = value


def stored_blocks(data: Any, *, owner: str) -> dict[str, dict[str, Any]]:
    """The extension blocks of a row's ``extension_data`` that can be shown, each without
    its unassigned members; ``owner`` (``user <id>``) names the row in the warning."""
    if not data:
        return {}
    if not isinstance(data, dict):
        _unreadable(owner, f"a JSON {_JSON_TYPES.get(type(data), 'value')}")
        return {}
    blocks: dict[str, dict[str, Any]] = {}
    dropped = 0
    for urn, block in data.items():
        if not (isinstance(urn, str) and urn.lower().startswith("urn:")
                and urn.lower() not in _KNOWN and isinstance(block, dict)):
            dropped += 1
            continue
        kept = assigned(block)
        if kept:
            blocks[urn] = kept
    if dropped:
        _unreadable(owner, f"{dropped} member(s) that are no extension block")
    return blocks


def _unreadable(owner: str, what: str) -> None:
    """Warn once per row (per process): its stored extension data is not shown."""
    if owner in _WARNED:
        return
    if len(_WARNED) >= _WARNED_LIMIT:
        _WARNED.clear()
    _WARNED.add(owner)
    log.warning("stored extension_data of %s is %s: left out of the resource until a PUT "
                "or PATCH writes it anew", owner, what)
