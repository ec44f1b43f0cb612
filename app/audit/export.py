"""Audit export: filtered iteration, CSV, JSON Lines and OCSF (Account Change 3001, Group
Management 3006)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ColumnElement, and_, func, literal, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.audit.horizon import SETTLE_SECONDS, settled_through
from app.audit.log import chain_for
from app.errors import InvalidInput
from app.models import AuditEvent

FORMATS = ("csv", "jsonl", "ocsf")
CSV_COLUMNS = ["event_id", "organization_id", "chain", "seq", "occurred_at", "action",
               "actor_type", "actor_id", "subject_type", "subject_id", "request_id", "data",
               "prev_hash", "hash"]

# OCSF 1.1 Account Change (class_uid 3001) activity ids by our action tag.
OCSF_ACTIVITY = {"user:create": 1, "user:reactivate": 2, "user:deprovision": 5,
                 "user:delete": 6, "user:purge": 6, "grant:add": 7, "grant:remove": 8}
OCSF_CLASS = 3001
# OCSF 1.1 Group Management: the membership events, one per member (``ocsf_events``), and
# a group's creation, change and deletion.
OCSF_GROUP_CLASS = 3006
OCSF_GROUP_ACTIVITY = {"group:create": 6, "group:delete": 5, "group:update": 99}
_OCSF_CLASS_NAMES = {OCSF_CLASS: "Account Change", OCSF_GROUP_CLASS: "Group Management"}
# Each activity's caption, which OCSF's activity_name holds ("as defined by the
# activity_id"); activity 99 (Other) is named by Roster's own action tag.
_OCSF_ACTIVITY_NAMES = {
    OCSF_CLASS: {1: "Create", 2: "Enable", 5: "Disable", 6: "Delete", 7: "Attach Policy",
                 8: "Detach Policy"},
    OCSF_GROUP_CLASS: {3: "Add User", 4: "Remove User", 5: "Delete", 6: "Create"},
}


@dataclass(frozen=True)
class AuditFilter:
    """Which audit events to export (every field optional)."""

    organization_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    subject_id: str | None = None
    after_id: int = 0
    # Only the organization's chain after this seq (needs organization_id): an incremental
    # export that misses nothing. since/until select by occurred_at, the time a change was
    # made, but a record joins the chain (and an export) when its transaction commits, so
    # one made before an export's `until` and committed after it is in no later `since`.
    after_seq: int | None = None
    # At most this id: the position of the export (``position``), so that the next one,
    # from ``after_id`` this, starts where this one ended.
    through_id: int | None = None


def position(session: Session, organization_id: str | None,
             settle_seconds: float = SETTLE_SECONDS) -> int:
    """The id an export may run through and the next export start after (``after_id``),
    missing nothing: every record at or below it is committed or never will be.

    One organization's records commit in id order (its chain head is locked from the
    INSERT to the COMMIT, app/audit/log.py), so its newest visible id is such a position.
    Across organizations it is the settled id of app/audit/horizon.py, which waits for
    appends in flight (PostgreSQL; ``settle_seconds`` at most, then lock_not_available) or
    is the newest id (SQLite, one writer at a time).
    """
    if organization_id is None:
        settled = settled_through(session, settle_seconds)
        if settled is not None:
            return settled
    newest = select(func.max(AuditEvent.id))
    if organization_id is not None:
        newest = newest.where(AuditEvent.organization_id == organization_id)
    return int(session.scalar(newest) or 0)


# The group-membership events: one per group write and operation, subject the group, its
# members in data.user_ids (app/directory/groups.py), however many there are.
MEMBERSHIP_ACTIONS = ("membership:add", "membership:remove")


class json_list_holds(FunctionElement[bool]):
    """The JSON column's list under ``key`` holds the text ``value`` (false when the key is
    missing or not a list): EXISTS over ``json_each`` (SQLite) or
    ``json_array_elements_text`` (PostgreSQL, guarded by ``json_typeof``: a scalar would
    be an error, and a CASE is evaluated in order where an AND need not be)."""

    type = Boolean()
    inherit_cache = True
    name = "json_list_holds"
    _is_implicitly_boolean = True

    def __init__(self, column: ColumnElement[Any], key: str, value: str) -> None:
        super().__init__(column, literal(key), literal(value))


@compiles(json_list_holds)
def _holds_sqlite(element: json_list_holds, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, value = (compiler.process(c, **kw) for c in element.clauses)
    # Compiled fragments only (a column and bound parameters): no value is in the text.
    return (f"EXISTS (SELECT 1 FROM json_each({column}, '$.' || {key}) "  # noqa: S608
            f"WHERE json_each.type = 'text' AND json_each.value = {value})")


@compiles(json_list_holds, "postgresql")
def _holds_postgresql(element: json_list_holds, compiler: SQLCompiler, **kw: Any) -> str:
    column, key, value = (compiler.process(c, **kw) for c in element.clauses)
    return (f"CASE WHEN json_typeof(({column}) -> {key}) = 'array' THEN EXISTS "  # noqa: S608
            f"(SELECT 1 FROM json_array_elements_text(({column}) -> {key}) AS member(id) "
            f"WHERE member.id = {value}) ELSE false END")


def action_is(action: str) -> ColumnElement[bool]:
    """An action tag (``user:deprovision``), or a noun with ``:*`` (``user:*``) for every
    action of it: the list's filter and the exports' alike (``user:*`` exported nothing).
    A prefix compared as text, not LIKE: SQLite's LIKE ignores ASCII case, and an action
    matches case-sensitively on both databases, as the exact filter does."""
    if action.endswith(":*"):
        prefix = action[:-1]
        return func.substr(AuditEvent.action, 1, len(prefix)) == prefix
    return AuditEvent.action == action


def about_subject(subject_id: str) -> ColumnElement[bool]:
    """The events about ``subject_id``: those naming it their subject; the grant events
    of a user that name it ``user_id`` (a deprovisioning's ``grant:remove``, a
    reactivation's ``grant:add``); and the membership events of the groups it joined or
    left, which name it among their ``user_ids``.

    Grant events record their user as the subject now, as the mapping's always did; before,
    they named the grant, and a user's export left out the access it lost. A membership
    event stays the group's (one event for a PATCH of thousands of members, not one per
    member) and is found through its data. The stored records are kept as they were (their
    hashes cover them)."""
    return or_(AuditEvent.subject_id == subject_id,
               and_(AuditEvent.subject_type == "grant",
                    AuditEvent.data["user_id"].as_string() == subject_id),
               and_(AuditEvent.subject_type == "group",
                    AuditEvent.action.in_(MEMBERSHIP_ACTIONS),
                    json_list_holds(AuditEvent.data, "user_ids", subject_id)))


def iter_events(session: Session, flt: AuditFilter, limit: int | None = None,
                ) -> Iterator[AuditEvent]:
    """Matching events in insertion order (with after_seq: in seq order), streamed."""
    stmt = select(AuditEvent).where(AuditEvent.id > flt.after_id).order_by(AuditEvent.id)
    if flt.after_seq is not None:
        if not flt.organization_id:
            raise InvalidInput("after_seq needs one organization: seq counts per "
                               "organization's chain", field="after_seq")
        stmt = stmt.where(AuditEvent.chain == chain_for(flt.organization_id),
                          AuditEvent.seq > flt.after_seq).order_by(None).order_by(AuditEvent.seq)
    if flt.organization_id:
        stmt = stmt.where(AuditEvent.organization_id == flt.organization_id)
    if flt.through_id is not None:
        stmt = stmt.where(AuditEvent.id <= flt.through_id)
    if flt.since:
        stmt = stmt.where(AuditEvent.occurred_at >= flt.since)
    if flt.until:
        stmt = stmt.where(AuditEvent.occurred_at < flt.until)
    if flt.action:
        stmt = stmt.where(action_is(flt.action))
    if flt.subject_id:
        stmt = stmt.where(about_subject(flt.subject_id))
    if limit:
        stmt = stmt.limit(limit)
    yield from session.scalars(stmt.execution_options(yield_per=500))


def as_dict(event: AuditEvent) -> dict[str, Any]:
    """One event as plain JSON values (the JSON Lines form)."""
    return {c: (getattr(event, c).isoformat() if c == "occurred_at" else getattr(event, c))
            for c in CSV_COLUMNS}


# Actions that record a failure: an OCSF Failure of high severity, which a SIEM alerts on
# (README: alert on user:deprovision_failed, a termination that did not happen).
_OCSF_OUTCOME: dict[str, dict[str, Any]] = {
    "user:deprovision_failed": {"severity_id": 4, "status_id": 2, "status": "Failure"},
}


def as_ocsf(event: AuditEvent) -> dict[str, Any]:
    """One event as an OCSF 1.1 Account Change (3001) event; other actions use activity 99.
    A membership event is Group Management (3006), one per member: ``ocsf_events``."""
    if event.action in OCSF_GROUP_ACTIVITY:
        return _as_ocsf_group(event)
    activity = OCSF_ACTIVITY.get(event.action, 99)
    user_id = event.data.get("user_id") if event.subject_type != "user" else event.subject_id
    outcome = _OCSF_OUTCOME.get(event.action)
    if outcome is not None:
        outcome = {**outcome, "status_detail": event.data.get("error")}
    return {
        **_ocsf_common(event, OCSF_CLASS, activity),
        **(outcome or {"severity_id": 1, "status_id": 1, "status": "Success"}),
        "user": {"uid": user_id},
        "unmapped": _unmapped(event),
    }


def _as_ocsf_group(event: AuditEvent) -> dict[str, Any]:
    """A group's creation (6 Create), deletion (5 Delete) or change (99 Other) as an OCSF
    1.1 Group Management (3006) event: a group, not a user, is what changed (as an Account
    Change it had ``user.uid`` null, and Account Change requires a user)."""
    activity = OCSF_GROUP_ACTIVITY[event.action]
    name = event.data.get("displayName")
    return {
        **_ocsf_common(event, OCSF_GROUP_CLASS, activity),
        "severity_id": 1, "status_id": 1, "status": "Success",
        "group": {"uid": event.subject_id, **({"name": name} if isinstance(name, str) else {})},
        "unmapped": _unmapped(event),
    }


def _unmapped(event: AuditEvent) -> dict[str, Any]:
    """What OCSF has no attribute for: Roster's action, the subject, the data, the hashes."""
    return {"action": event.action, "subject_type": event.subject_type,
            "subject_id": event.subject_id, "data": event.data, "hash": event.hash,
            "prev_hash": event.prev_hash}


def _ocsf_common(event: AuditEvent, class_uid: int, activity: int,
                 uid: str | None = None) -> dict[str, Any]:
    """The attributes every OCSF event of ours has, whatever its class: the class, the
    activity's id, its caption (Roster's action tag for 99 Other) and the type they make."""
    name = _OCSF_ACTIVITY_NAMES[class_uid].get(activity, event.action)
    class_name = _OCSF_CLASS_NAMES[class_uid]
    return {
        "class_uid": class_uid, "class_name": class_name,
        "category_uid": 3, "category_name": "Identity & Access Management",
        "activity_id": activity, "activity_name": name,
        "type_uid": class_uid * 100 + activity, "type_name": f"{class_name}: {name}",
        "time": int(event.occurred_at.timestamp() * 1000),
        "metadata": {"version": "1.1.0", "uid": uid or event.event_id, "correlation_uid":
                     event.request_id, "product": {"name": "Roster", "vendor_name": "Roster"},
                     "sequence": event.seq, "tenant_uid": event.organization_id},
        "actor": {"user": {"uid": event.actor_id, "type": event.actor_type}},
    }


def ocsf_events(event: AuditEvent, subject_id: str | None = None) -> list[dict[str, Any]]:
    """The OCSF 1.1 form of one audit event: one Account Change (3001) event
    (``as_ocsf``), or, for a ``membership:add`` / ``membership:remove`` event, one Group
    Management (3006) event per member, activity 3 Add User / 4 Remove User.

    One audit event of a group write names all its members in ``data.user_ids`` (a PATCH of
    thousands is one record), but an OCSF Group Management event has a single ``user``: put
    in one event, the members were no ``user`` at all (``user.uid`` null), so a SIEM rule on
    ``user.uid`` never saw a user join or leave a group. One OCSF event per member keeps
    every event valid for its class and each member searchable as the event's ``user``.
    Each has its own ``metadata.uid`` (the audit event's id, ``:`` and the member's id: a
    SIEM that deduplicates by uid keeps them all) and the audit event's id, ``seq`` and
    hashes in ``unmapped``, with ``user_count`` members; ``data`` is given without its
    ``user_ids`` (each of thousands of events repeating thousands of ids would square the
    export's size): the JSON Lines export holds the record as stored. With ``subject_id``
    (an export of one user's history), only that user's event of the group write."""
    user_ids = event.data.get("user_ids") if event.action in MEMBERSHIP_ACTIONS else None
    if not isinstance(user_ids, list) or not user_ids:
        return [as_ocsf(event)]
    if subject_id is not None and event.subject_id != subject_id:
        user_ids = [uid for uid in user_ids if uid == subject_id]
    activity = 3 if event.action == "membership:add" else 4
    data = {key: value for key, value in event.data.items() if key != "user_ids"}
    unmapped = {"action": event.action, "event_id": event.event_id,
                "subject_type": event.subject_type,
                "subject_id": event.subject_id, "data": data, "user_count": len(
                    event.data["user_ids"]), "hash": event.hash, "prev_hash": event.prev_hash}
    return [{**_ocsf_common(event, OCSF_GROUP_CLASS, activity, f"{event.event_id}:{user_id}"),
             "severity_id": 1, "status_id": 1, "status": "Success",
             "group": {"uid": event.data.get("group_id") or event.subject_id},
             "user": {"uid": user_id}, "unmapped": unmapped}
            for user_id in user_ids]


def render(events: Iterable[AuditEvent], fmt: str, subject_id: str | None = None,
           ) -> Iterator[str]:
    """Stream text chunks of the chosen format (a header line first for CSV); an OCSF
    export of ``subject_id``'s history gives only its own part of a group write."""
    if fmt == "csv":
        yield _csv_line(CSV_COLUMNS)
        for event in events:
            row = as_dict(event)
            row["data"] = json.dumps(row["data"], sort_keys=True)
            yield _csv_line([row[c] for c in CSV_COLUMNS])
        return
    for event in events:
        for line in (ocsf_events(event, subject_id) if fmt == "ocsf" else [as_dict(event)]):
            yield json.dumps(line, sort_keys=True, default=str) + "\n"


# The first characters that make a spreadsheet read a cell as a formula (OWASP "CSV
# Injection"): =, +, -, @, TAB and CR.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A CSV cell that no spreadsheet runs: text beginning like a formula gets a single
    quote before it (OWASP "CSV Injection"), so that a request id ``-2-3``, or any text a
    client chose at the start of a cell, opens as text in the analyst's spreadsheet.
    Numbers stay numbers; None is empty."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _csv_line(values: list[Any]) -> str:
    """One CSV record (RFC 4180, as Python's csv module quotes it) of neutralized cells."""
    buffer = io.StringIO()
    csv.writer(buffer).writerow([csv_cell(v) for v in values])
    return buffer.getvalue()
