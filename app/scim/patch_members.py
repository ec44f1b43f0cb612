"""PATCH operations on Group ``members`` as changes to named rows (RFC 7644 §3.5.2): pure.

A group may have 50,000 members, so members are never loaded into the resource dict: each
operation becomes a ``MemberChange`` that the caller applies to the named rows only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from app.scim import dialect
from app.scim.errors import ScimError
from app.scim.groups import member_ids as user_ids
from app.scim.patch_paths import Path, member_ids
from app.scim.values import normalise_value, note

MemberOp = Literal["add", "remove", "replace", "remove_all"]


@dataclass(frozen=True)
class MemberChange:
    """Add, remove or replace-with exactly ``ids``; or remove every member (``remove_all``)."""

    op: MemberOp
    ids: tuple[str, ...] = ()


def member_change(op: str, path: Path, value: Any, notes: list[str]) -> MemberChange | None:
    """The change one operation on ``members`` asks for; None when it changes nothing."""
    if path.sub is not None:
        raise ScimError(400, "Members are added or removed whole; their sub-attributes "
                        "cannot be modified", "mutability")
    if path.filter is not None:
        if op != "remove":
            raise ScimError(400, "A members filter can only be removed; add members with "
                            "path 'members'", "mutability")
        named = member_ids(path.filter)
        if named is None:
            return MemberChange("remove_all")
        return MemberChange("remove", named)
    if op == "remove":
        if value is None or value == "":
            return MemberChange("remove_all")
        # Entra: {"op":"Remove","path":"members","value":[{"value":"id"}]} removes exactly
        # those members; reading it as "remove all" empties the group.
        note(notes, dialect.LEGACY_MEMBER_REMOVAL)
        ids = _ids(path, value, notes)
        return MemberChange("remove", ids) if ids else None
    ids = _ids(path, value, notes)
    if op == "replace":
        note(notes, dialect.MEMBERS_REPLACE_ALL)
        return MemberChange("replace", ids)
    return MemberChange("add", ids) if ids else None


def _ids(path: Path, value: Any, notes: list[str]) -> tuple[str, ...]:
    """The member ids of a value: a list of {"value": id} (a single object is accepted)."""
    assert path.attribute is not None
    members = normalise_value(path.attribute, value, notes=notes, where="members") or []
    # As in a POST or PUT: a member of type Group is refused, not stored as a user.
    return tuple(dict.fromkeys(user_ids(members)))
