"""The root search (RFC 7644 §3.4.3): Users and Groups in one result set, one order.

Both tables are queried by one UNION ALL of (sort value, type, id), so ``sortBy`` orders the
whole result across the two types and ``startIndex`` pages through it; the page's rows are
then loaded by id, one query per type. An attribute one type lacks (``userName`` on Groups)
is absent from all of that type's resources: in the filter it compares as a missing value
(``translate_filter``'s ``absent``), and as ``sortBy`` its value is missing, which sorts
like every missing value: last if ascending, first if descending (RFC 7644 §3.4.2.3).
An attribute neither type has is 400, as it is at /Users and /Groups.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, and_, func, literal, null, select, union_all

from app.db import Reader, core
from app.models.directory import Group, User
from app.scim.errors import ScimError
from app.scim.filter_syntax import Resource, has_attribute, parse_attribute_path
from app.scim.filters import sort_key, translate_filter
from app.scim.listing import ListParams, exact_total, tenant_condition
from app.sql import among

_TYPES: tuple[tuple[Resource, type[User] | type[Group]], ...] = (("User", User),
                                                                  ("Group", Group))


def root_page(session: Reader, directory_id: str, params: ListParams, *, dialect: str,
              max_results: int, notes: list[str] | None = None,
              ) -> tuple[list[tuple[Resource, Any]], int]:
    """One page of the root search, as (resource type, row) in result order, and the exact
    total. Without ``sortBy`` Users come first, then Groups, each in creation order."""
    path = parse_attribute_path(params.sort_by, "invalidValue") if params.sort_by else None
    if path is not None and not any(has_attribute(path, r) for r, _ in _TYPES):
        raise ScimError(400, f"sortBy {params.sort_by!r} is an attribute of neither User nor "
                             f"Group resources", "invalidValue")
    parts, absent = [], []
    for rank, (resource, model) in enumerate(_TYPES):
        absent.append(set[str]())
        where = tenant_condition(model, directory_id)
        if params.filter:
            where = and_(where, translate_filter(params.filter, resource, dialect=dialect,
                                                 notes=notes, absent=absent[-1]))
        value: ColumnElement[Any] = model.created_at
        if path is not None:
            value = (sort_key(params.sort_by, resource, dialect=dialect, notes=notes).expr
                     if has_attribute(path, resource) else null())
        parts.append(select(value.label("v"), literal(rank).label("r"),
                            model.id.label("id")).where(where))
    unknown = sorted(set.intersection(*absent))
    if unknown:
        raise ScimError(400, f"Unknown attribute {unknown[0]!r} for User and Group resources",
                        "invalidFilter")
    found = union_all(*parts).subquery()
    connection = core(session)
    total = exact_total(session, params, lambda: select(func.count()).select_from(found), {},
                        None, max_results)
    if not params.count:
        return [], total
    page = list(connection.execute(
        select(found.c.r, found.c.id).order_by(*_order(found, params))
        .offset(params.start_index - 1).limit(params.count)))
    return _load(connection, page), total


def _order(found: Any, params: ListParams) -> list[ColumnElement[Any]]:
    """(missing, sort value, type, id), a missing value after every value ("last if ascending
    and first if descending", RFC 7644 §3.4.2.3); the type first when nothing is sorted."""
    descending = params.sort_order == "descending"

    def flip(column: ColumnElement[Any]) -> ColumnElement[Any]:
        return column.desc() if descending else column.asc()

    if params.sort_by is None:
        return [found.c.r, flip(found.c.v), flip(found.c.id)]
    return [flip(found.c.v.is_(None)), flip(found.c.v), flip(found.c.r), flip(found.c.id)]


def _load(connection: Any, page: list[Any]) -> list[tuple[Resource, Any]]:
    """The page's rows, by id, in the page's order."""
    rows: dict[tuple[int, str], Any] = {}
    for rank, (_resource, model) in enumerate(_TYPES):
        ids = [row.id for row in page if row.r == rank]
        if ids:
            for row in connection.execute(select(model.__table__).where(among(model.id)),
                                          {"ids": ids}):
                rows[(rank, row.id)] = row
    return [(_TYPES[row.r][0], rows[(row.r, row.id)]) for row in page]

