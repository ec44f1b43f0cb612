"""The comparison operators of SCIM filters (RFC 7644 §3.4.2.2, Table 3) as SQL, shared by
the core attributes (app.scim.filters) and custom extension attributes
(app.scim.filter_extensions), and the dateTime operand (RFC 7643 §2.3.5).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, func

from app.scim.filter_syntax import Compare, invalid

Bool = ColumnElement[bool]


def ordered(lhs: ColumnElement[Any], op: str, rhs: Any, node: Compare) -> Bool:
    """``eq``, ``gt``, ``ge``, ``lt`` or ``le``; any other operator is invalidFilter."""
    if op == "eq":
        return lhs == rhs
    if op == "gt":
        return lhs > rhs
    if op == "ge":
        return lhs >= rhs
    if op == "lt":
        return lhs < rhs
    if op == "le":
        return lhs <= rhs
    raise invalid(f"The operator {node.op!r} does not apply to {node.path.text}")


def substring(lhs: ColumnElement[Any], rhs: ColumnElement[Any], op: str, dialect: str) -> Bool:
    """``co``, ``sw`` or ``ew`` on text, exactly as the operands are (fold them before for
    caseExact=false). Not LIKE: SQLite's LIKE ignores ASCII case, which would break caseExact
    attributes."""
    pg = dialect == "postgresql"
    if op == "co":
        return (func.strpos(lhs, rhs) if pg else func.instr(lhs, rhs)) > 0
    if op == "sw":
        return func.substr(lhs, 1, func.length(rhs)) == rhs
    tail = func.right(lhs, func.length(rhs)) if pg else func.substr(lhs, -func.length(rhs))
    return tail == rhs


def datetime_operand(node: Compare) -> datetime:
    """An xsd:dateTime operand (RFC 7643 §2.3.5) as an aware datetime; no offset means UTC."""
    if not isinstance(node.value, str):
        raise invalid(f"{node.path.text} is a dateTime: quote an ISO 8601 value")
    try:
        parsed = datetime.fromisoformat(node.value)
    except ValueError:
        raise invalid(f"{node.path.text}: {node.value!r} is not an ISO 8601 dateTime, e.g. "
                      f"2026-01-31T12:00:00Z") from None
    try:
        # Normalised here: an offset that moves year 9999 or 1 out of range would otherwise
        # fail only when the statement runs.
        return (parsed.replace(tzinfo=UTC) if parsed.tzinfo is None
                else parsed.astimezone(UTC))
    except OverflowError:
        raise invalid(f"{node.path.text}: {node.value!r} is out of range: in UTC it falls "
                      "outside the years 1 to 9999") from None
