"""Where each filterable SCIM attribute lives in SQL: columns, JSON lists and memberships.

Single-valued attributes map to columns (RFC 7643 §4.1, §4.3); multi-valued ones are either a
JSON list of objects on the users row, matched with EXISTS over json_each (SQLite) or
jsonb_array_elements (PostgreSQL), or the memberships table (User.groups, Group.members).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, String, and_, case, cast, func, literal, or_, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import aliased

from app.models.directory import Group, GroupMemberVersion, Membership, User
from app.scim.filter_syntax import Resource, invalid
from app.scim.schema import Attribute

Bool = ColumnElement[bool]


@dataclass(frozen=True)
class Field:
    """One comparable SQL value and the schema definition that says how to compare it."""

    expr: ColumnElement[Any]
    attr: Attribute
    nullable: bool = True
    # Server-issued ids are lower-case UUIDs: lowering the operand instead of the column
    # is the same caseExact=false comparison and keeps the index usable.
    lower_ids: bool = False
    # JSON booleans differ by database; such fields bring their own equality test.
    is_bool: Callable[[bool], Bool] | None = None
    # An indexed column equal to ``expr`` wherever ``expr`` is not NULL (manager.value:
    # users.manager_id): ``eq`` adds ``column = value`` so that the index finds the rows.
    indexed: ColumnElement[Any] | None = None


@cache
def columns(model: type[User] | type[Group]) -> dict[str, tuple[ColumnElement[Any], bool]]:
    """Canonical attribute name -> (column, nullable) for single-valued attributes.

    Built once per model: the aliased manager subquery alone costs milliseconds to build.
    """
    manager = aliased(User, name="manager")
    common: dict[str, tuple[ColumnElement[Any], bool]] = {
        "id": (model.id, False), "externalId": (model.external_id, True),
        "meta.created": (model.created_at, False),
        "meta.lastModified": (_last_modified(model, manager), False),
        "meta.resourceType": (literal(model.__name__, String()), False),
    }
    if model is Group:
        return {**common, "displayName": (Group.display_name, False)}
    named = {
        "userName": "user_name", "name.formatted": "name_formatted",
        "name.familyName": "family_name", "name.givenName": "given_name",
        "name.middleName": "middle_name", "name.honorificPrefix": "honorific_prefix",
        "name.honorificSuffix": "honorific_suffix", "displayName": "display_name",
        "nickName": "nick_name", "profileUrl": "profile_url", "title": "title",
        "userType": "user_type", "preferredLanguage": "preferred_language",
        "locale": "locale", "timezone": "timezone", "active": "active",
        "employeeNumber": "employee_number", "costCenter": "cost_center",
        "organization": "organization_name", "division": "division",
        "department": "department",
    }
    columns = {name: (getattr(User, col), name not in ("userName", "active"))
               for name, col in named.items()}
    # As rendered (app/scim/user_views.py): a deleted manager stays linked, so a restore
    # brings it back, but is left out of the output, so filters must not see it either.
    # Its displayName, else userName, as app.directory.users.display_names gives it.
    live = (manager.id == User.manager_id, manager.deleted_at.is_(None))
    manager_id = select(manager.id).where(*live).correlate(User).scalar_subquery()
    display = (select(func.coalesce(manager.display_name, manager.user_name))
               .where(*live).correlate(User).scalar_subquery())
    return {**common, **columns, "manager.value": (manager_id, True),
            "manager.displayName": (display, True)}


def _last_modified(model: type[User] | type[Group], manager: Any) -> ColumnElement[Any]:
    """meta.lastModified as rendered (app/scim/etag.py): the row's own, or later the time
    its members (a group) or its manager, its groups or its grants (a user) last changed
    as SCIM shows them (app/directory/versions.py), looked up by key."""
    if model is Group:
        moved = (select(GroupMemberVersion.changed_at)
                 .where(GroupMemberVersion.group_id == Group.id)
                 .correlate(Group).scalar_subquery())
        return case((moved > Group.updated_at, moved), else_=Group.updated_at)
    moved = (select(manager.shown_at).where(manager.id == User.manager_id)
             .correlate(User).scalar_subquery())
    # The user's own columns first: the manager's subquery is named once. A NULL time
    # compares as unknown, so the CASE keeps the other side.
    own = case((User.groups_at > User.updated_at, User.groups_at), else_=User.updated_at)
    own = case((User.access_at > own, User.access_at), else_=own)
    return case((moved > own, moved), else_=own)


JSON_COLUMNS = {
    "emails": "emails", "phoneNumbers": "phone_numbers", "ims": "ims", "photos": "photos",
    "addresses": "addresses", "entitlements": "entitlements", "roles": "roles",
    "x509Certificates": "x509_certificates",
}


class Collection:
    """The values of one multi-valued attribute: fields of one value, and EXISTS over them."""

    def __init__(self, attr: Attribute) -> None:
        self.attr = attr

    def field(self, sub: Attribute) -> Field:
        """The SQL value of sub-attribute ``sub`` of one value."""
        raise NotImplementedError

    def exists(self, predicate: Bool) -> Bool:
        """EXISTS a value of the attribute for which ``predicate`` holds."""
        raise NotImplementedError


class JsonCollection(Collection):
    """A JSON list of objects on the users row (RFC 7643 §2.4)."""

    def __init__(self, attr: Attribute, column: ColumnElement[Any], dialect: str) -> None:
        super().__init__(attr)
        self.dialect = dialect
        if dialect == "postgresql":
            # A JSON null or scalar would make jsonb_array_elements raise: treat it as [].
            array = case((func.jsonb_typeof(column) == "array", column),
                         else_=cast(literal("[]"), JSONB))
            self.values = func.jsonb_array_elements(array).table_valued("value").alias()
        else:
            # Only object values count (see exists): json_extract on a bare string raises.
            self.values = func.json_each(column).table_valued("value", "type").alias()

    def field(self, sub: Attribute) -> Field:
        element = self.values.c.value
        if self.dialect == "postgresql":
            text = element.op("->>", return_type=String())(literal(sub.name, String()))

            def is_bool(value: bool) -> Bool:
                return func.lower(text) == ("true" if value else "false")
        else:
            json_path = literal(f'$."{sub.name}"', String())
            text = func.json_extract(element, json_path)

            def is_bool(value: bool) -> Bool:
                word = "true" if value else "false"
                # JSON booleans, and the strings "True"/"False" some IdPs store.
                return or_(func.json_type(element, json_path) == word,
                           func.lower(func.json_extract(element, json_path)) == word)
        return Field(text, sub, is_bool=is_bool if sub.type == "boolean" else None)

    def exists(self, predicate: Bool) -> Bool:
        if self.dialect == "postgresql":
            is_object = func.jsonb_typeof(self.values.c.value) == "object"
        else:
            is_object = self.values.c.type == "object"
        return select(literal(1)).select_from(self.values).where(is_object, predicate).exists()


class Memberships(Collection):
    """User.groups or Group.members: rows of the memberships table (RFC 7643 §4.1.2, §4.2)."""

    def __init__(self, attr: Attribute, resource: Resource) -> None:
        super().__init__(attr)
        self.resource = resource
        self.link = aliased(Membership)
        self.other = aliased(Group) if resource == "User" else aliased(User)
        self.joined = False

    def field(self, sub: Attribute) -> Field:
        if sub.name == "value":
            col = self.link.group_id if self.resource == "User" else self.link.user_id
            return Field(col, sub, nullable=False, lower_ids=True)
        if sub.name == "display":
            self.joined = True
            if self.resource == "User":
                return Field(self.other.display_name, sub)
            # As rendered: a member's displayName, else userName (app.directory.groups).
            user = self.other
            return Field(func.coalesce(user.display_name, user.user_name), sub)
        if sub.name == "type":
            kind = "direct" if self.resource == "User" else "User"
            return Field(literal(kind, String()), sub, nullable=False)
        raise invalid(f"{self.attr.name}.{sub.name} cannot be used in a filter")

    def exists(self, predicate: Bool) -> Bool:
        link, other = self.link, self.other
        if self.resource == "User":
            stmt = select(literal(1)).select_from(link).where(link.user_id == User.id)
            on = other.id == link.group_id
        else:
            # Deleted users are not listed as members, so they never match either.
            stmt = select(literal(1)).select_from(link).where(link.group_id == Group.id)
            on = and_(other.id == link.user_id, other.deleted_at.is_(None))
            self.joined = True
        if self.joined:
            stmt = stmt.join(other, on)
        return stmt.where(predicate).exists()


def collection(attr: Attribute, resource: Resource, dialect: str) -> Collection:
    """The values of multi-valued attribute ``attr`` of the outer row."""
    if attr.name in ("groups", "members"):
        return Memberships(attr, resource)
    return JsonCollection(attr, getattr(User, JSON_COLUMNS[attr.name]), dialect)


def first_value(attr: Attribute, sub: Attribute, dialect: str) -> ColumnElement[Any]:
    """Sub-attribute ``sub`` of the primary value of the JSON list ``attr``, else of its first
    value, as text (NULL when there is none, or it is ``""``): what a multi-valued sortBy
    orders by (RFC 7644 §3.4.2.3). A correlated scalar subquery of the users row; "primary"
    is a JSON ``true``, as ``app.directory.users.primary_email`` reads it."""
    column = getattr(User, JSON_COLUMNS[attr.name])
    if dialect == "postgresql":
        array = case((func.jsonb_typeof(column) == "array", column),
                     else_=cast(literal("[]"), JSONB))
        values = func.jsonb_array_elements(array).table_valued(
            "value", with_ordinality="position").render_derived()
        element = values.c.value
        text = element.op("->>", return_type=String())(literal(sub.name, String()))
        primary = element.op("->", return_type=JSONB)(literal("primary", String())) \
            == cast(literal("true"), JSONB)
        is_object = func.jsonb_typeof(element) == "object"
        position = values.c.position
    else:
        values = func.json_each(column).table_valued("value", "type", "key").alias()
        element = values.c.value
        text = func.json_extract(element, literal(f'$."{sub.name}"', String()))
        primary = func.json_type(element, literal('$."primary"', String())) == "true"
        is_object = values.c.type == "object"
        position = values.c.key
    # CASE, not the comparison itself: a NULL (no primary member) sorts last on SQLite and
    # first on PostgreSQL in a descending order.
    chosen = (select(func.nullif(text, "")).select_from(values).where(is_object)
              .order_by(case((primary, 0), else_=1), position).limit(1))
    return chosen.scalar_subquery()
