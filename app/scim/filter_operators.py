"""The comparison operators of SCIM filters (RFC 7644 §3.4.2.2, Table 3) as SQL, shared by
the core attributes (app.scim.filters) and custom extension attributes
(app.scim.filter_extensions), and the dateTime operand (RFC 7643 §2.3.5).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, false, func

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


# xsd:dateTime (XML Schema 1.1 Part 2 §3.3.7), the lexical form RFC 7643 §2.3.5 requires:
# a four-digit year (Roster's range is 1 to 9999), "T", seconds, optional fraction digits and
# an optional offset up to 14:00; 24:00:00 is the first instant of the next day.
_XSD_DATETIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})T"
    r"(?:(?P<time>(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)(?:\.(?P<fraction>\d+))?"
    r"|(?P<midnight>24:00:00(?:\.0+)?))"
    r"(?P<offset>Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))?", re.ASCII)


@dataclass(frozen=True)
class Instant:
    """A dateTime operand in UTC, to the microsecond Roster stores: ``at`` truncated to it,
    ``ceiling`` the microsecond at or after the literal (``at`` unless the literal gave a
    finer fraction, ``.123456789``)."""

    at: datetime
    ceiling: datetime

    @property
    def exact(self) -> bool:
        """Whether the literal is a whole microsecond."""
        return self.at == self.ceiling


def datetime_operand(node: Compare) -> Instant:
    """An xsd:dateTime operand (RFC 7643 §2.3.5) in UTC; no offset means UTC.

    Only the xsd lexical form is taken: Python's ``fromisoformat`` also reads a date alone
    (``2020-01-01``), a space for ``T``, ``2020-W01-1`` or ``20200101T0000``, which are
    not dateTimes and would be taken as the midnight they do not state."""
    if not isinstance(node.value, str):
        raise invalid(f"{node.path.text} is a dateTime: quote an ISO 8601 value")
    match = _XSD_DATETIME.fullmatch(node.value)
    try:
        if match is None:
            raise ValueError(node.value)
        fraction = match["fraction"] or ""
        parsed = datetime.fromisoformat(
            f"{match['date']}T{match['time'] or '00:00:00'}.{fraction[:6].ljust(6, '0')}"
            f"{_offset(match['offset'])}")
    except ValueError:
        raise invalid(f"{node.path.text}: {node.value!r} is not an ISO 8601 dateTime in "
                      f"xsd:dateTime form (RFC 7643 §2.3.5), e.g. 2026-01-31T12:00:00Z") from None
    try:
        # Normalised here: an offset that moves year 9999 or 1 out of range would otherwise
        # fail only when the statement runs.
        at = parsed.astimezone(UTC)
        if match["midnight"]:
            at += timedelta(days=1)
        finer = bool(fraction[6:].strip("0"))
        return Instant(at, at + timedelta(microseconds=1) if finer else at)
    except OverflowError:
        raise invalid(f"{node.path.text}: {node.value!r} is out of range: in UTC it falls "
                      "outside the years 1 to 9999") from None


def _offset(offset: str | None) -> str:
    return offset if offset is not None and offset != "Z" else "+00:00"


def compare_instant(lhs: ColumnElement[Any], op: str, operand: Instant, node: Compare) -> Bool:
    """``ordered`` on a dateTime column, exact for a literal finer than the microseconds a
    column holds: ``ge``/``lt`` compare with the next microsecond, and ``eq`` holds nowhere."""
    if operand.exact or op in ("gt", "le"):
        return ordered(lhs, op, operand.at, node)
    if op == "eq":
        return false()
    return ordered(lhs, op, operand.ceiling, node)
