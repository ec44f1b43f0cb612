"""Cursor pagination for every /api/v1 list: opaque cursors over a stable keyset ordering.

Usage in a view (the route declares ``query=PageArgs`` or a subclass, ``paginated=True``
and the item schema as ``response``)::

    stmt = within(select(Unit).where(...), Unit.created_at, ctx.args)  # since/until, if any
    return ctx.paginate(stmt, (Unit.created_at, Unit.id))

The ordering must end in a unique column (``id``) so no row is skipped or repeated when
rows with equal timestamps straddle a page boundary.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.types import TypeDecorator

from app.errors import InvalidInput
from app.json_input import parse_json

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
# Integer ordering columns are 64-bit (BigInteger ids): a cursor value beyond that range
# names no row, and SQLite's driver cannot even bind it (OverflowError).
_INT_RANGE = range(-2**63, 2**63)


@dataclass(frozen=True)
class Page:
    """One page of a list and the cursor of the next page (None on the last page)."""

    items: list[Any]
    next_cursor: str | None


def encode_cursor(values: Sequence[Any]) -> str:
    """Opaque cursor: URL-safe base64 of the ordering values of the last row."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps(plain, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_values(cursor: str, *, field: str = "cursor") -> Any:
    """The JSON inside a cursor of :func:`encode_cursor`, unchecked; bad input -> 400."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return parse_json(raw)  # also refuses NUL and surrogates: never queried
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor is not one this list issued; start again without it",
                           field=field) from None


def list_cursor(values: Sequence[Any], tag: str) -> str:
    """The cursor of a list page: the last row's ordering values and the list's ``tag``
    (:func:`list_tag`), so that it continues this list only."""
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    raw = json.dumps({"list": tag, "after": plain}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def list_tag(*parts: str) -> str:
    """A short name of one list (its route and organization): not a secret, only a check
    that a cursor comes back to the list that issued it."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def decode_cursor(cursor: str, order: Sequence[InstrumentedAttribute[Any]],
                  tag: str | None = None) -> list[Any]:
    """Inverse of :func:`encode_cursor` and :func:`list_cursor`, typed by the ordering
    columns; bad input, or a cursor of another list than ``tag``'s, -> 400. A bare list of
    values (a cursor issued before cursors named their list) is still taken."""
    values = decode_values(cursor)
    if isinstance(values, dict) and tag is not None:
        if set(values) != {"list", "after"} or values["list"] != tag:
            raise InvalidInput("cursor is not one this list issued (a cursor continues the "
                               "list, and the organization, it came from); start again "
                               "without it", field="cursor")
        values = values["after"]
    try:
        if not isinstance(values, list) or len(values) != len(order):
            raise ValueError("wrong shape")
        return [_typed(column, value) for column, value in zip(order, values, strict=True)]
    except (ValueError, TypeError):
        raise InvalidInput("cursor is not one this list issued; start again without it",
                           field="cursor") from None


def _typed(column: InstrumentedAttribute[Any], value: Any) -> Any:
    column_type = column.type
    # TypeDecorators (UTCDateTime) report ``object``; their implementation knows better.
    python_type = (column_type.impl_instance if isinstance(column_type, TypeDecorator)
                   else column_type).python_type
    if python_type is datetime:
        if not isinstance(value, str):
            raise ValueError("timestamp expected")
        parsed = datetime.fromisoformat(value)
        if parsed.tzinfo is None:
            raise ValueError("timestamp without a zone")
        return parsed
    if python_type is int and (not isinstance(value, int) or isinstance(value, bool)
                               or value not in _INT_RANGE):
        raise ValueError("64-bit integer expected")
    if python_type is str and not isinstance(value, str):
        raise ValueError("string expected")
    return value


def _after(order: Sequence[InstrumentedAttribute[Any]], values: Sequence[Any], *,
           descending: bool = False) -> Any:
    """(a, b, c) > (x, y, z) (``descending``: <), spelled out so both databases use the
    index."""
    clauses = []
    for i, column in enumerate(order):
        equal = [order[j] == values[j] for j in range(i)]
        clauses.append(and_(*equal, column < values[i] if descending else column > values[i]))
    return or_(*clauses)


def within(stmt: Select[Any], column: InstrumentedAttribute[Any],
           args: dict[str, Any]) -> Select[Any]:
    """Apply ``since`` (inclusive) and ``until`` (exclusive) of TimeRangeArgs to ``column``."""
    if args.get("since") is not None:
        stmt = stmt.where(column >= args["since"])
    if args.get("until") is not None:
        stmt = stmt.where(column < args["until"])
    return stmt


def paginate(session: Session, stmt: Select[Any], order: Sequence[InstrumentedAttribute[Any]],
             *, limit: int = DEFAULT_LIMIT, cursor: str | None = None,
             tag: str | None = None, keyed: bool = False, descending: bool = False) -> Page:
    """Run ``stmt`` ordered by ``order`` (ascending; ``descending``: newest first, for the
    flight recorder), from ``cursor``, ``limit`` rows at most;
    with a ``tag`` (:func:`list_tag`), cursors name their list and only continue it.
    ``keyed``: ``stmt`` selects the item, then the ``order`` values (columns of another
    table than the item's, e.g. a joined position); the items are the first column."""
    if cursor:
        stmt = stmt.where(_after(order, decode_cursor(cursor, order, tag),
                                 descending=descending))
    stmt = stmt.order_by(*(column.desc() if descending else column for column in order))
    stmt = stmt.limit(limit + 1)
    found: list[Any] = session.execute(stmt).all() if keyed else list(session.scalars(stmt))
    rows = [row[0] for row in found] if keyed else found
    if len(rows) <= limit:
        return Page(rows, None)
    values = (list(found[limit - 1][1:]) if keyed
              else [getattr(rows[limit - 1], c.key) for c in order])
    return Page(rows[:limit], encode_cursor(values) if tag is None
                else list_cursor(values, tag))
