"""Group wire format <-> model (RFC 7643 §4.2)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.directory.groups import GroupInput
from app.models import Group
from app.scim import lengths
from app.scim.errors import ScimError
from app.scim.etag import etag_of
from app.scim.opaque import stored_blocks
from app.scim.projection import Projection
from app.scim.schema import CORE_GROUP
from app.scim.users import iso

GROUP_ALWAYS = frozenset({"id", "displayname"})
_LIMITS = lengths.limits(Group.__table__, {"displayName": "display_name",
                                           "externalId": "external_id"})


_UUID = re.compile(r"[0-9A-Fa-f]{8}-(?:[0-9A-Fa-f]{4}-){3}[0-9A-Fa-f]{12}")


def member_ids(members: Any) -> list[str]:
    """The user ids of a canonical ``members`` value (RFC 7643 §4.2); groups cannot nest.

    ``members.value`` is caseExact false (RFC 7643 §8.7.1, and our /Schemas), as filters
    compare it; ids are lower-case UUIDs, so an id in any case names its user."""
    ids = []
    for item in members or []:
        if str(item.get("type", "User")).lower() == "group":
            raise ScimError(400, "Nested groups are not supported; members must be users",
                            "invalidValue")
        value = item["value"]
        # Only an id is folded: anything else is echoed as sent in the "unknown" error.
        ids.append(value.lower() if _UUID.fullmatch(value) else value)
    return ids


def group_from_scim(resource: dict[str, Any]) -> GroupInput:
    """A resource made canonical by ``values.normalise_resource`` -> GroupInput."""
    extensions = {k: v for k, v in resource.items() if k.lower().startswith("urn:")}
    lengths.check({"display_name": resource["displayName"],
                   "external_id": resource.get("externalId")}, _LIMITS)
    return GroupInput(display_name=resource["displayName"],
                      external_id=resource.get("externalId"), extension_data=extensions,
                      member_ids=member_ids(resource.get("members")))


def group_to_scim(group: Group, *, base_url: str, projection: Projection,
                  members: Sequence[str] | None = None,
                  names: dict[str, str] | None = None, version: str | None = None,
                  modified: datetime | None = None) -> dict[str, Any]:
    """The Group resource; ``members`` is None when they were not loaded (excluded), and
    ``names`` (members' display) only when ``attributes`` asks for ``members.display``.
    ``version`` and ``modified``: meta.version and meta.lastModified with the members' part
    (app/scim/etag.py); the row's own when not given."""
    out: dict[str, Any] = {"schemas": [CORE_GROUP], "id": group.id,
                           "displayName": group.display_name}
    if group.external_id is not None:
        out["externalId"] = group.external_id
    if members:
        # "display" is returned on request only: a join per member, and IdPs never read it.
        out["members"] = [{"value": uid, "$ref": f"{base_url}/Users/{uid}", "type": "User"}
                          for uid in members]
        if names is not None:
            for member in out["members"]:
                if member["value"] in names:
                    member["display"] = names[member["value"]]
    for urn, data in stored_blocks(group.extension_data, owner=f"group {group.id}").items():
        out["schemas"].append(urn)
        out[urn] = data
    out["meta"] = {"resourceType": "Group", "created": iso(group.created_at),
                   "lastModified": iso(modified or group.updated_at),
                   "location": f"{base_url}/Groups/{group.id}",
                   "version": etag_of(version or str(group.version))}
    return projection.apply(out)
