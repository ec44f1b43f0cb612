"""User wire format <-> model (RFC 7643 §4.1, §4.3, and the Roster access extension)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from app.directory.users import UserInput
from app.models import User
from app.scim import lengths
from app.scim.errors import ScimError
from app.scim.etag import etag_of
from app.scim.opaque import stored_blocks
from app.scim.projection import Projection
from app.scim.schema import CORE_USER, ENTERPRISE_USER, ROSTER_USER

USER_ALWAYS = frozenset({"id", "username"})
# SCIM attribute -> column, for single-valued strings of the core schema.
CORE_STRINGS: dict[str, str] = {
    "externalId": "external_id", "userName": "user_name", "displayName": "display_name",
    "nickName": "nick_name", "profileUrl": "profile_url", "title": "title",
    "userType": "user_type", "preferredLanguage": "preferred_language", "locale": "locale",
    "timezone": "timezone",
}
NAME_PARTS: dict[str, str] = {
    "formatted": "name_formatted", "familyName": "family_name", "givenName": "given_name",
    "middleName": "middle_name", "honorificPrefix": "honorific_prefix",
    "honorificSuffix": "honorific_suffix",
}
MULTI: dict[str, str] = {
    "emails": "emails", "phoneNumbers": "phone_numbers", "ims": "ims", "photos": "photos",
    "addresses": "addresses", "entitlements": "entitlements", "roles": "roles",
    "x509Certificates": "x509_certificates",
}
ENTERPRISE_STRINGS: dict[str, str] = {
    "employeeNumber": "employee_number", "costCenter": "cost_center",
    "organization": "organization_name", "division": "division", "department": "department",
}


# Bounded string columns, by SCIM attribute (app/scim/lengths.py).
_LIMITS = (lengths.limits(User.__table__, CORE_STRINGS)
           + lengths.limits(User.__table__, NAME_PARTS, "name.")
           + lengths.limits(User.__table__, ENTERPRISE_STRINGS, f"{ENTERPRISE_USER}:"))
# The primary email is copied to its own (indexed) column.
_EMAIL_LENGTH = int(User.__table__.c.primary_email.type.length)


def iso(value: datetime) -> str:
    """RFC 3339 text with a Z suffix (RFC 7643 §2.3.5)."""
    return value.isoformat().replace("+00:00", "Z")


def user_from_scim(resource: dict[str, Any]) -> UserInput:
    """A resource made canonical by ``values.normalise_resource`` -> UserInput (RFC 7643 §4.1)."""
    values: dict[str, Any] = {column: resource.get(attr) for attr, column in CORE_STRINGS.items()}
    name = resource.get("name") or {}
    values.update({column: name.get(attr) for attr, column in NAME_PARTS.items()})
    values.update({column: resource.get(attr) or [] for attr, column in MULTI.items()})
    enterprise = resource.get(ENTERPRISE_USER) or {}
    values.update({column: enterprise.get(attr) for attr, column in ENTERPRISE_STRINGS.items()})
    manager = enterprise.get("manager") or {}
    values["extension_data"] = {
        key: value for key, value in resource.items()
        if key.lower().startswith("urn:") and key not in (ENTERPRISE_USER, ROSTER_USER)
    }
    if not isinstance(values["user_name"], str) or not values["user_name"].strip():
        raise ScimError(400, "Attribute 'userName' is required", "invalidValue")
    lengths.check(values, _LIMITS)
    for email in values["emails"]:
        address = email.get("value") if isinstance(email, dict) else None
        if isinstance(address, str) and len(address) > _EMAIL_LENGTH:
            lengths.too_long("emails.value", _EMAIL_LENGTH, len(address))
    return UserInput(values=values, active=resource.get("active"),
                     manager_id=manager.get("value") or None,
                     password=resource.get("password"))


def _compact(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None and v != [] and v != {}}


def user_to_scim(user: User, *, base_url: str, projection: Projection,
                 groups: Sequence[tuple[str, str]] | None = None,
                 grants: dict[str, Any] | None = None,
                 manager_name: str | None = None,
                 manager_gone: bool = False,
                 manager_pending: str | None = None,
                 version: str | None = None,
                 modified: datetime | None = None) -> dict[str, Any]:
    """The User resource; ``groups``/``grants`` are passed only when they were loaded.
    ``manager_gone``: the manager was deleted, so the reference is left out (its ``$ref``
    would be a 404; RFC 7644 §3.6). The link itself is kept: a restored manager has it
    back, and an IdP that repeats it in a PUT is not refused. ``manager_pending``: a
    reference naming no user yet (app/directory/managers.py), passed only for the state a
    PATCH applies to, so that a PATCH not touching it keeps it. ``version`` and ``modified``:
    meta.version and meta.lastModified with the manager's part (app/scim/etag.py); the row's
    own when not given."""
    location = f"{base_url}/Users/{user.id}"
    out: dict[str, Any] = {"schemas": [CORE_USER], "id": user.id}
    for attr, column in CORE_STRINGS.items():
        out[attr] = getattr(user, column)
    out["name"] = _compact({a: getattr(user, c) for a, c in NAME_PARTS.items()}) or None
    out["active"] = user.active
    for attr, column in MULTI.items():
        out[attr] = getattr(user, column) or None
    if groups:
        out["groups"] = [{"value": gid, "$ref": f"{base_url}/Groups/{gid}", "display": name,
                          "type": "direct"} for gid, name in groups]
    enterprise = _compact({a: getattr(user, c) for a, c in ENTERPRISE_STRINGS.items()})
    if user.manager_id and not manager_gone:
        enterprise["manager"] = _compact({
            "value": user.manager_id, "$ref": f"{base_url}/Users/{user.manager_id}",
            "displayName": manager_name})
    elif manager_pending:
        enterprise["manager"] = {"value": manager_pending}
    if enterprise:
        out["schemas"].append(ENTERPRISE_USER)
        out[ENTERPRISE_USER] = enterprise
    if grants:
        out["schemas"].append(ROSTER_USER)
        out[ROSTER_USER] = grants
    for urn, data in stored_blocks(user.extension_data, owner=f"user {user.id}").items():
        out["schemas"].append(urn)
        out[urn] = data
    out["meta"] = {"resourceType": "User", "created": iso(user.created_at),
                   "lastModified": iso(modified or user.updated_at), "location": location,
                   "version": etag_of(version or str(user.version))}
    return projection.apply(_compact(out))
