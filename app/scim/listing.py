"""List and search queries (RFC 7644 §3.4.2, §3.4.3) with index and cursor paging (RFC 9865).

The view passes the base condition (tenant, not deleted) and the parsed parameters; this
module adds the filter, counts with the same WHERE, orders stably by (sort value, id) and
returns one page. Cursor pages are keyset queries, so the last page costs what the first does.
"""

from __future__ import annotations

import functools
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, bindparam, func, literal, or_, select, tuple_

from app.db import Reader, core
from app.models.directory import Group, User
from app.scim.cursor import (
    CursorValue,
    Position,
    decode_cursor,
    encode_cursor,
    query_fingerprint,
)
from app.scim.errors import ScimError
from app.scim.filter_syntax import Resource
from app.scim.filters import (
    FILTER_VALUE,
    SortKey,
    invalid_value,
    prepared_filter,
    sort_key,
    split_eq_string,
    translate_filter,
)
from app.scim.schema import LIST_RESPONSE
from app.sql import among_selected, fetch

SortOrder = Literal["ascending", "descending"]
_INTEGER = re.compile(r"\s*-?[0-9]{1,4000}\s*")  # int() reads up to 4,300 digits
_LARGEST = 10**15  # beyond any real list, and safely inside SQL's 64-bit OFFSET


@dataclass(frozen=True)
class ListParams:
    """The query parameters of a list or .search request (RFC 7644 §3.4.2, RFC 9865 §2)."""

    filter: str | None = None
    sort_by: str | None = None
    sort_order: SortOrder = "ascending"
    start_index: int = 1
    count: int = 100
    attributes: tuple[str, ...] = ()
    excluded_attributes: tuple[str, ...] = ()
    cursor: str | None = None  # None: index paging; "": first cursor page
    start_index_given: bool = False
    # startIndex as the client sent it (at least 1), for the ListResponse: start_index is
    # held inside SQL's 64-bit OFFSET, which a number past any list would overflow.
    start_index_sent: int = 1


@dataclass(frozen=True)
class ListPage:
    """One page of results and what the ListResponse needs to describe it."""

    # Core rows of the users or groups table (attribute access like the ORM objects).
    resources: list[Any]
    total_results: int
    start_index: int | None  # None when paging by cursor
    items_per_page: int
    next_cursor: str | None = None
    previous_cursor: str | None = None


def _integer(source: Mapping[str, Any], name: str, from_body: bool) -> int | None:
    raw = source.get(name)
    if raw is None or (raw == "" and not from_body):
        return None
    value = raw if isinstance(raw, int) and not isinstance(raw, bool) else None
    if isinstance(raw, str) and _INTEGER.fullmatch(raw):
        value = int(raw)
    if value is None:
        raise invalid_value(f"{name} must be an integer, got {_echo(raw)}")
    return value


def _echo(raw: Any) -> str:
    """A parameter as sent, for an error's detail: escaped (repr) and at most 40 characters,
    as values.py echoes attribute values (a 5,000-character count came back whole)."""
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def _held(value: int) -> int:
    # Held inside SQL's 64-bit range: a huge count is then capped at the page size and a
    # huge startIndex is past the end (an empty page), as smaller ones are (RFC 7644
    # §3.4.2.4), rather than one an error and the other not.
    return max(-_LARGEST, min(value, _LARGEST))


def _names(source: Mapping[str, Any], name: str) -> tuple[str, ...]:
    raw = source.get(name)
    if raw is None:
        return ()
    items = raw.split(",") if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise invalid_value(f"{name} must be a list of attribute names")
    return tuple(i.strip() for i in items if i.strip())


def _text(source: Mapping[str, Any], name: str) -> str | None:
    raw = source.get(name)
    if raw is not None and not isinstance(raw, str):
        raise invalid_value(f"{name} must be a string")
    return raw


def parse_list_params(source: Mapping[str, Any], *, from_body: bool, default_count: int,
                      max_count: int, resource: Resource | None = None) -> ListParams:
    """Read list parameters from a query string or SearchRequest body (RFC 7644 §3.4.3)."""
    filter_text = _text(source, "filter")
    sort_by = _text(source, "sortBy") or None
    order = (_text(source, "sortOrder") or "ascending").lower()
    if order not in ("ascending", "descending"):
        raise invalid_value("sortOrder must be 'ascending' or 'descending', got "
                            f"{_echo(order)}")
    if sort_by and resource is not None:
        sort_key(sort_by, resource, dialect="sqlite")  # refused alike on either database
    start = _integer(source, "startIndex", from_body)
    count = _integer(source, "count", from_body)
    cursor = _text(source, "cursor")
    return ListParams(
        filter=filter_text if filter_text and filter_text.strip() else None,
        sort_by=sort_by, sort_order=order,  # type: ignore[arg-type]
        # RFC 7644 §3.4.2.4: startIndex < 1 is 1, a negative count is 0.
        start_index=max(1, _held(start) if start is not None else 1),
        start_index_sent=max(1, start if start is not None else 1),
        count=min(max_count, max(0, _held(count) if count is not None else default_count)),
        attributes=_names(source, "attributes"),
        excluded_attributes=_names(source, "excludedAttributes"),
        cursor=cursor, start_index_given=start is not None,
    )


_TENANT = "scim_directory_id"


def tenant_condition(model: type[User] | type[Group],
                     directory_id: Any = None) -> ColumnElement[bool]:
    """Tenant isolation: only this directory's resources, never soft-deleted users.

    Without ``directory_id`` the directory is the bound parameter ``scim_directory_id``.
    """
    value = bindparam(_TENANT) if directory_id is None else directory_id
    condition = model.directory_id == value
    if model is User:
        condition = condition & User.deleted_at.is_(None)
    return condition


def run_list(session: Reader, model: type[User] | type[Group], directory_id: str,
             params: ListParams, *, resource: Resource, dialect: str, max_results: int,
             notes: list[str] | None = None,
             cursor_key: bytes = b"roster-scim-cursor",
             attach: tuple[ColumnElement[Any], ...] = ()) -> ListPage:
    """Run a list query: exact totalResults, a stable page (RFC 7644 §3.4.2.4, RFC 9865).

    ``attach``: columns of each row's own the page selects too (correlated to the row,
    such as a user's groups: ``app.directory.users.ATTACHED``)."""
    if params.cursor is not None and params.start_index_given:
        raise invalid_value("Use either startIndex or cursor, not both (RFC 9865 §2)")
    lookup = split_eq_string(params.filter) if params.filter and params.cursor is None else None
    prepared = prepared_filter(lookup[0], resource, dialect) if lookup else None
    if lookup and prepared:
        # Its notes, as the full path gives them.
        sort_key(params.sort_by, resource, dialect=dialect, notes=notes)
        if notes is not None:
            notes.extend(prepared.notes)
        page, count = _prepared_statements(resource, dialect, lookup[0], params.sort_by,
                                           params.sort_order, params.start_index, params.count,
                                           attach)
        values = {_TENANT: directory_id, FILTER_VALUE: prepared.value(lookup[1])}
        # The statements are cached objects, so the page runs on the driver's cursor.
        return _index_page(session, params, page, lambda: count, values, max_results,
                           prepared=True)
    where = tenant_condition(model, directory_id)
    if params.filter:
        where = and_(where, translate_filter(params.filter, resource, dialect=dialect,
                                             notes=notes))
    key = sort_key(params.sort_by, resource, dialect=dialect, notes=notes)

    def count() -> Select[Any]:
        return _count_statement(model, where)

    if params.cursor is not None:
        return _cursor_page(session, model, where, params, key,
                            lambda known: exact_total(session, params, count, {}, known,
                                                      max_results),
                            (resource, directory_id), cursor_key, attach)
    page = _page_statement(model, where, key, params.sort_order, params.start_index,
                           params.count, dialect, attach)
    return _index_page(session, params, page, count, {}, max_results)


def exact_total(session: Reader, params: ListParams, count: Callable[[], Select[Any]],
                values: dict[str, Any], known: int | None, max_results: int) -> int:
    """The exact totalResults, else 400 tooMany for a filter matching more than
    ``max_results``; ``known`` when the page already holds every match."""
    found = known if known is not None else (core(session).scalar(count(), values) or 0)
    if params.filter and found > max_results:
        raise ScimError(400, f"The filter matches {found} resources, more than the "
                             f"{max_results} this server returns; narrow the filter",
                        "tooMany")
    return found


def _index_page(session: Reader, params: ListParams, page: Select[Any],
                count: Callable[[], Select[Any]], values: dict[str, Any],
                max_results: int, *, prepared: bool = False) -> ListPage:
    """One startIndex page. A first page shorter than count holds every match: its length
    is the exact total and the COUNT query (half the cost of a filter lookup) is not run."""
    rows: list[Any] = []
    if params.count:
        connection = core(session)
        # Only cached statements may take fetch (it keeps their compiled form by identity).
        rows = (fetch(connection, page, values) if prepared
                else list(connection.execute(page, values)))
    short = params.start_index == 1 and len(rows) < params.count
    return ListPage(rows, exact_total(session, params, count, values,
                                 len(rows) if short else None, max_results),
                    params.start_index_sent, len(rows))


def _count_statement(model: type[User] | type[Group],
                     where: ColumnElement[bool]) -> Select[Any]:
    return select(func.count()).select_from(model).where(where)


def _page_statement(model: type[User] | type[Group], where: ColumnElement[bool],
                    key: SortKey, sort_order: SortOrder, start_index: int,
                    count: int, dialect: str,
                    attach: tuple[ColumnElement[Any], ...] = ()) -> Select[Any]:
    """A startIndex page. On PostgreSQL a later page (an OFFSET) picks its ids first, in
    an index-only scan of the sort index, then reads the rows of those ids alone: an
    OFFSET over whole rows read every skipped row from the table, and the last of 50,000
    users cost four times the first page (bench/README.md). SQLite already reads a row
    only when a column of it is wanted, so there the plain form is as cheap."""
    order = _order(key, model, sort_order == "descending")
    if dialect == "postgresql" and start_index > 1:
        ids = select(model.id).where(where).order_by(*order).offset(start_index - 1) \
            .limit(count)
        return select(model.__table__, *attach).where(among_selected(model.id, ids)) \
            .order_by(*order)
    return select(model.__table__, *attach).where(where).order_by(*order) \
        .offset(start_index - 1).limit(count)


@functools.lru_cache(maxsize=256)
def _prepared_statements(resource: Resource, dialect: str, path: str, sort_by: str | None,
                         sort_order: SortOrder, start_index: int, count: int,
                         attach: tuple[ColumnElement[Any], ...] = (),
                         ) -> tuple[Select[Any], Select[Any]]:
    """The page and COUNT statements of a prepared ``attr eq "value"`` filter, built once per
    filter path and page shape (parameters: the directory and the value)."""
    model: type[User] | type[Group] = User if resource == "User" else Group
    prepared = prepared_filter(path, resource, dialect)
    assert prepared is not None
    where = and_(tenant_condition(model), prepared.where)
    page = _page_statement(model, where, sort_key(sort_by, resource, dialect=dialect), sort_order,
                           start_index, count, dialect, attach)
    return page, _count_statement(model, where)


def _cursor_page(session: Reader, model: type[User] | type[Group],
                 where: ColumnElement[bool], params: ListParams, key: SortKey,
                 total: Callable[[int | None], int], scope: tuple[Resource, str],
                 secret: bytes, attach: tuple[ColumnElement[Any], ...] = ()) -> ListPage:
    """A keyset page after or before the cursor position (RFC 9865 §2.2). The cursor is
    bound to the resource type and directory of ``scope``: another directory's cursor is
    invalidCursor, not an empty page (RFC 9865 §2.1)."""
    descending = params.sort_order == "descending"
    fingerprint = query_fingerprint(*scope, params.filter, key.name, params.sort_order)
    position = (decode_cursor(params.cursor, fingerprint, secret, key.type)
                if params.cursor else None)
    if params.count == 0:
        return ListPage([], total(None), None, 0)
    backward = position is not None and position.direction == "previous"
    stmt = select(model.__table__, *attach, key.expr.label("sort_value")).where(where)
    if position is not None:
        stmt = stmt.where(_beyond(key, model, position, descending))
    stmt = stmt.order_by(*_order(key, model, descending, backward)).limit(params.count + 1)
    found = [(row, row.sort_value) for row in core(session).execute(stmt)]
    more = len(found) > params.count
    found = found[:params.count]
    if backward:
        found.reverse()

    def cursor_at(index: int, direction: Literal["next", "previous"]) -> str:
        obj, value = found[index]
        return encode_cursor(Position(direction, _plain(value), obj.id), fingerprint, secret)

    next_cursor = previous_cursor = None
    if found:
        if more or backward:
            next_cursor = cursor_at(-1, "next")
        if position is not None and (more or not backward):
            previous_cursor = cursor_at(0, "previous")
    rows = [obj for obj, _ in found]
    exact = len(rows) if position is None and not more else None
    return ListPage(rows, total(exact), None, len(rows), next_cursor, previous_cursor)


def _plain(value: Any) -> CursorValue:
    if value is None or isinstance(value, str | bool | datetime):
        return value
    return str(value)


def _order(key: SortKey, model: type[User] | type[Group], descending: bool,
           backward: bool = False) -> list[ColumnElement[Any]]:
    """ORDER BY (missing, sort value, id), reversed if backward.

    A missing value orders after every value: "ordered last if ascending and first if
    descending" (RFC 7644 §3.4.2.3). The flag is explicit because SQLite sorts NULLs first
    and PostgreSQL last.
    """
    flip = operator.methodcaller("desc" if descending != backward else "asc")
    order = [flip(key.expr), flip(model.id)]
    if key.nullable:
        order.insert(0, flip(key.expr.is_(None)))
    return order


def _beyond(key: SortKey, model: type[User] | type[Group], position: Position,
            descending: bool) -> ColumnElement[bool]:
    """Rows strictly after (or before) the position in the (missing, value, id) order,
    where a missing value is greater than every value (``_order``)."""
    after = (position.direction == "next") != descending
    cmp = operator.gt if after else operator.lt
    value = literal(position.value, key.expr.type) if position.value is not None else None
    row_id = literal(position.id, model.id.type)
    if not key.nullable:
        return cmp(tuple_(key.expr, model.id), tuple_(value, row_id))
    if value is None:
        if after:
            return and_(key.expr.is_(None), cmp(model.id, row_id))
        return or_(key.expr.is_not(None), and_(key.expr.is_(None), cmp(model.id, row_id)))
    same = and_(key.expr == value, cmp(model.id, row_id))
    if after:
        return or_(key.expr.is_(None), cmp(key.expr, value), same)
    return or_(cmp(key.expr, value), same)


def list_response(page: ListPage, resources: list[dict[str, Any]]) -> dict[str, Any]:
    """The ListResponse message (RFC 7644 §3.4.2, with RFC 9865 §2.2 cursors)."""
    body: dict[str, Any] = {"schemas": [LIST_RESPONSE], "totalResults": page.total_results,
                            "itemsPerPage": page.items_per_page}
    if page.start_index is not None:
        body["startIndex"] = page.start_index
    if page.next_cursor:
        body["nextCursor"] = page.next_cursor
    if page.previous_cursor:
        body["previousCursor"] = page.previous_cursor
    body["Resources"] = resources
    return body
