"""SCIM schema definitions (RFC 7643 §4, §7, §8.7.1) as data, shared by every SCIM module.

Filters use types and caseExact, PATCH uses mutability and multiValued, the serializer uses
``returned``, and /Schemas publishes the same objects, so what we advertise is what we do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
ROSTER_USER = "urn:roster:params:scim:schemas:extension:access:2.0:User"
CORE_GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"


# Elements of one multi-valued User attribute (emails, roles ...): a person has a handful,
# and PATCH value paths compare every element, so a list of thousands made one request run
# for minutes.
MAX_VALUES = 100


@dataclass(frozen=True)
class Attribute:
    """One attribute definition (RFC 7643 §7)."""

    name: str
    type: str = "string"  # string boolean decimal integer dateTime reference complex binary
    multi_valued: bool = False
    required: bool = False
    case_exact: bool = False
    mutability: str = "readWrite"  # readOnly readWrite immutable writeOnly
    returned: str = "default"  # always never default request
    uniqueness: str = "none"  # none server global
    description: str = ""
    sub_attributes: tuple[Attribute, ...] = ()
    canonical_values: tuple[str, ...] = ()
    reference_types: tuple[str, ...] = ()
    # The most elements a multi-valued attribute of a User may hold (None: no limit, as for
    # a Group's members, kept as rows). Not in /Schemas (RFC 7643 §7 has no such
    # characteristic); the README states it.
    max_values: int | None = None

    def __post_init__(self) -> None:
        # Looked up for every key of every value written (PATCH and POST alike).
        object.__setattr__(self, "_subs", _by_lower_name(self.sub_attributes))

    def sub(self, name: str) -> Attribute | None:
        """The sub-attribute called ``name`` (case-insensitive, RFC 7643 §2.1)."""
        return self._subs.get(name.lower())  # type: ignore[attr-defined, no-any-return]

    def to_scim(self) -> dict[str, Any]:
        """The attribute as published under /Schemas (RFC 7643 §7)."""
        out: dict[str, Any] = {
            "name": self.name, "type": self.type, "multiValued": self.multi_valued,
            "description": self.description, "required": self.required,
            "caseExact": self.case_exact, "mutability": self.mutability,
            "returned": self.returned, "uniqueness": self.uniqueness,
        }
        if self.sub_attributes:
            out["subAttributes"] = [a.to_scim() for a in self.sub_attributes]
        if self.canonical_values:
            out["canonicalValues"] = list(self.canonical_values)
        if self.reference_types:
            out["referenceTypes"] = list(self.reference_types)
        return out


@dataclass(frozen=True)
class Schema:
    """A schema: its URN, name and attributes (RFC 7643 §7)."""

    id: str
    name: str
    description: str
    attributes: tuple[Attribute, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", _by_lower_name(self.attributes))

    def attribute(self, name: str) -> Attribute | None:
        """The top-level attribute called ``name`` (case-insensitive)."""
        return self._by_name.get(name.lower())  # type: ignore[attr-defined, no-any-return]

    def to_scim(self, base_url: str) -> dict[str, Any]:
        """The Schema resource (RFC 7643 §7) with its meta."""
        return {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
            "id": self.id, "name": self.name, "description": self.description,
            "attributes": [a.to_scim() for a in self.attributes],
            "meta": {"resourceType": "Schema", "location": f"{base_url}/Schemas/{self.id}"},
        }


def _by_lower_name(attributes: tuple[Attribute, ...]) -> dict[str, Attribute]:
    """Attributes by lower-cased name, the first of a name winning (names are
    case-insensitive, RFC 7643 §2.1)."""
    return {a.name.lower(): a for a in reversed(attributes)}


def _s(name: str, **kw: Any) -> Attribute:
    return Attribute(name=name, **kw)


def _multi(name: str, types: tuple[str, ...], value_type: str = "string",
           extra: tuple[Attribute, ...] = (), description: str = "") -> Attribute:
    """The common shape of multi-valued attributes (RFC 7643 §2.4)."""
    return Attribute(
        name=name, type="complex", multi_valued=True, description=description,
        max_values=MAX_VALUES,
        sub_attributes=(
            _s("value", type=value_type), _s("display"),
            _s("type", canonical_values=types), _s("primary", type="boolean"), *extra,
        ),
    )


# Common attributes (RFC 7643 §3.1), present on every resource.
ID = _s("id", case_exact=True, mutability="readOnly", returned="always", uniqueness="server")
EXTERNAL_ID = _s("externalId", case_exact=True)
META = _s("meta", type="complex", mutability="readOnly", sub_attributes=(
    _s("resourceType", case_exact=True, mutability="readOnly"),
    _s("created", type="dateTime", mutability="readOnly"),
    _s("lastModified", type="dateTime", mutability="readOnly"),
    _s("location", type="reference", case_exact=True, mutability="readOnly",
       reference_types=("uri",)),
    _s("version", case_exact=True, mutability="readOnly"),
))
COMMON = (ID, EXTERNAL_ID, META)

USER = Schema(CORE_USER, "User", "User Account", attributes=(
    _s("userName", required=True, uniqueness="server", returned="always",
       description="Unique identifier for the User, typically used to sign in."),
    _s("name", type="complex", sub_attributes=(
        _s("formatted"), _s("familyName"), _s("givenName"), _s("middleName"),
        _s("honorificPrefix"), _s("honorificSuffix"),
    )),
    _s("displayName"), _s("nickName"),
    _s("profileUrl", type="reference", reference_types=("external",)),
    _s("title"), _s("userType"), _s("preferredLanguage"), _s("locale"), _s("timezone"),
    _s("active", type="boolean"),
    _s("password", mutability="writeOnly", returned="never"),
    _multi("emails", ("work", "home", "other")),
    _multi("phoneNumbers", ("work", "home", "mobile", "fax", "pager", "other")),
    _multi("ims", ("aim", "gtalk", "icq", "xmpp", "msn", "skype", "qq", "yahoo")),
    _multi("photos", ("photo", "thumbnail"), value_type="reference"),
    Attribute(name="addresses", type="complex", multi_valued=True, max_values=MAX_VALUES,
              sub_attributes=(
        _s("formatted"), _s("streetAddress"), _s("locality"), _s("region"),
        _s("postalCode"), _s("country"), _s("type", canonical_values=("work", "home", "other")),
        _s("primary", type="boolean"),
    )),
    Attribute(name="groups", type="complex", multi_valued=True, mutability="readOnly",
              sub_attributes=(
                  _s("value", mutability="readOnly"),
                  _s("$ref", type="reference", mutability="readOnly",
                     reference_types=("User", "Group")),
                  _s("display", mutability="readOnly"),
                  _s("type", mutability="readOnly", canonical_values=("direct", "indirect")),
              )),
    _multi("entitlements", ()),
    _multi("roles", ()),
    _multi("x509Certificates", (), value_type="binary"),
))

ENTERPRISE = Schema(ENTERPRISE_USER, "EnterpriseUser", "Enterprise User", attributes=(
    _s("employeeNumber"), _s("costCenter"), _s("organization"), _s("division"),
    _s("department"),
    _s("manager", type="complex", sub_attributes=(
        _s("value"),
        _s("$ref", type="reference", reference_types=("User",)),
        _s("displayName", mutability="readOnly"),
    )),
))

ROSTER_ACCESS = Schema(ROSTER_USER, "RosterAccess",
                       "The user's effective portal access, computed by Roster's mapping",
                       attributes=(
    _s("organization", mutability="readOnly"),
    Attribute(name="grants", type="complex", multi_valued=True, mutability="readOnly",
              sub_attributes=(
                  _s("unit", mutability="readOnly"), _s("unitPath", mutability="readOnly"),
                  _s("role", mutability="readOnly"),
              )),
))

GROUP = Schema(CORE_GROUP, "Group", "Group", attributes=(
    _s("displayName", required=True, uniqueness="server", returned="always"),
    Attribute(name="members", type="complex", multi_valued=True, sub_attributes=(
        # Required here (RFC 7643 §8.7.1 leaves it optional): a member without an id names
        # nobody, and dropping it would tell the IdP its member was added.
        _s("value", mutability="immutable", required=True),
        _s("$ref", type="reference", mutability="immutable", reference_types=("User",)),
        # Returned only when asked for (attributes=members.display): a join per member.
        _s("display", mutability="readOnly", returned="request"),
        _s("type", mutability="immutable", canonical_values=("User",)),
    )),
))

SCHEMAS: dict[str, Schema] = {s.id: s for s in (USER, ENTERPRISE, ROSTER_ACCESS, GROUP)}
USER_SCHEMAS = (CORE_USER, ENTERPRISE_USER, ROSTER_USER)
GROUP_SCHEMAS = (CORE_GROUP,)
