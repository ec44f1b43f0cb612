"""Deprovisioning records under the audit chain: each record's digest in its audit event.

A deprovisioning record (app/lifecycle/records.py) is a row of its own, outside the hash
chain. Its ``user:deprovision`` (or ``user:deprovision_failed``) audit event, written in the
same transaction, carries ``record_digest``: SHA-256 over the canonical JSON of the
record's fields as written (``SEALED``). The chain covers the event, so the event covers
the record: ``roster audit verify`` recomputes each digest and reports a record changed,
removed, or present without an event naming it (added outside Roster).

The fields written after that transaction (``STAMPED``: the commit stamp
``revocation_committed_at`` and ``latency_ms``, a second write once the revocation is
durable; ``batch_id``, the mass-event guard at commit, for earlier records too; and
``restored_at``, a later reactivation) are sealed by ``deprovision_record:stamp`` events
written in the transaction that stamps them: ``data.records`` maps each record id to the
values it was given. A record whose event says ``stamps_sealed`` must hold exactly the
values its stamp events gave (the latest per field), and none where none was given.
Records written before digests existed are checked for presence only, and those written
before stamps were sealed for their digest only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.audit.log import RECORD_ACTIONS, SYSTEM, Actor, event_values
from app.audit.log import record as record_event
from app.models import AuditEvent
from app.models.lifecycle import DeprovisionRecord

DIGEST_KEY = "record_digest"
# In the record's event: its STAMPED fields are sealed by STAMP_ACTION events.
STAMPS_KEY = "stamps_sealed"
STAMP_ACTION = "deprovision_record:stamp"
# The fields written after the record's own transaction, each by a stamp event's transaction.
STAMPED = ("revocation_committed_at", "latency_ms", "batch_id", "restored_at")
# The fields fixed when the record is written, in the transaction of its audit event.
SEALED = ("id", "event_id", "organization_id", "user_id", "scim_id", "external_id",
          "user_name", "directory_id", "vendor", "dialect", "trigger", "reason",
          "actor_type", "actor_id", "request_id", "source_ip", "user_agent", "received_at",
          "applied_at", "state_before", "state_after", "sessions_revoked", "tokens_revoked",
          "grants_removed", "outcome", "error")


def record_digest(record: DeprovisionRecord) -> str:
    """SHA-256 (hex) over the canonical JSON of the record's ``SEALED`` fields."""
    body = {name: canonical_value(getattr(record, name)) for name in SEALED}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def seal_data(record: DeprovisionRecord) -> dict[str, Any]:
    """What the record's audit event holds to seal it: its digest, and that its later
    stamps are sealed too."""
    return {DIGEST_KEY: record_digest(record), STAMPS_KEY: True}


def stamp_values(organization_id: str, stamps: dict[str, dict[str, Any]],
                 actor: Actor = SYSTEM) -> dict[str, Any]:
    """The ``deprovision_record:stamp`` event (``event_values``) sealing ``stamps``: for
    each record id, the STAMPED fields it was just given."""
    records = {record_id: {name: canonical_value(value) for name, value in fields.items()}
               for record_id, fields in stamps.items()}
    return event_values(organization_id=organization_id, action=STAMP_ACTION, actor=actor,
                        subject_type="deprovision_record",
                        subject_id=next(iter(records)) if len(records) == 1 else None,
                        data={"records": records})


def seal_stamps(session: Session, organization_id: str, stamps: dict[str, dict[str, Any]],
                actor: Actor = SYSTEM) -> None:
    """Record the stamp event of ``stamps`` in the session's transaction, which writes them."""
    if stamps:
        values = stamp_values(organization_id, stamps, actor)
        record_event(session, organization_id=organization_id, action=STAMP_ACTION,
                     actor=actor,
               subject_type=values["subject_type"], subject_id=values["subject_id"],
               data=values["data"])


def canonical_value(value: Any) -> Any:
    """A value as it reads back from either database: a UTC timestamp as ISO 8601, and an
    integral float as an integer (PostgreSQL's jsonb keeps a number's value, not its
    notation: a float 1e+17 in the grants' parameters reads back as 100000000000000000)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): canonical_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical_value(v) for v in value]
    return value


@dataclass(frozen=True)
class RecordProblem:
    """One deprovisioning record the audit chain does not vouch for."""

    record_id: str
    event_id: str | None
    problem: str


@dataclass(frozen=True)
class RecordsReport:
    """How many records were checked, how many against a digest, and what was wrong."""

    records: int
    sealed: int
    problems: list[RecordProblem]


def verify_records(session: Session, organization_id: str | None = None) -> RecordsReport:
    """Check every deprovisioning record (of one organization, or all) against the audit
    events that name it: its digest, its stamps, its presence, and that an event names it.

    The events themselves are the chain's to check (app/audit/verify.py)."""
    named = _named_records(session, organization_id)
    stamped = _sealed_stamps(session, organization_id)
    records = select(DeprovisionRecord).order_by(DeprovisionRecord.id)
    if organization_id is not None:
        records = records.where(DeprovisionRecord.organization_id == organization_id)
    problems: list[RecordProblem] = []
    count = sealed = 0
    for rec in session.scalars(records.execution_options(yield_per=500)):
        count += 1
        found = named.pop(rec.id, None)
        if found is None:
            problems.append(RecordProblem(rec.id, None, "no audit event names this "
                                          "record: it was added outside Roster"))
            continue
        event_id, digest, stamps_sealed, audit_id = found
        if rec.audit_id != audit_id:
            problems.append(RecordProblem(rec.id, event_id, _position_problem(rec, audit_id)))
            continue
        if digest is None:
            continue  # written before records were sealed
        sealed += 1
        if record_digest(rec) != digest:
            problems.append(RecordProblem(rec.id, event_id, "the record does not match "
                                          "the digest its audit event holds: it was changed"))
        elif stamps_sealed:
            problem = _stamp_problem(rec, stamped.get(rec.id, {}))
            if problem is not None:
                problems.append(RecordProblem(rec.id, event_id, problem))
    problems.extend(RecordProblem(record_id, event_id, "the audit event names a record "
                                  "the database no longer holds: it was removed")
                    for record_id, (event_id, _digest, _stamps, _id) in named.items())
    return RecordsReport(count, sealed, problems)


def _position_problem(rec: DeprovisionRecord, audit_id: int) -> str:
    """The record's position (``audit_id``: where the record feed lists it) is not the id
    of the first audit event naming it."""
    if rec.audit_id is None:
        return (f"the record holds no position in the log (audit_id), the audit event naming "
                f"it is {audit_id}: written by a release before migration 0036 after the "
                "upgrade, or changed; GET /api/v1/deprovisions does not list it")
    return (f"the record's position in the log (audit_id) is {rec.audit_id}, the audit event "
            f"naming it is {audit_id}: it was changed, and GET /api/v1/deprovisions lists "
            "it out of place or not at all")


def _named_records(session: Session, organization_id: str | None,
                   ) -> dict[str, tuple[str, str | None, bool, int]]:
    """Record id -> (its event's id, the digest it holds, whether its stamps are sealed,
    the audit id of the first event naming it: the record's position)."""
    events = (select(AuditEvent.event_id, AuditEvent.data, AuditEvent.id)
              .where(AuditEvent.action.in_(RECORD_ACTIONS)).order_by(AuditEvent.id))
    if organization_id is not None:
        events = events.where(AuditEvent.organization_id == organization_id)
    named: dict[str, tuple[str, str | None, bool, int]] = {}
    for event_id, data, audit_id in session.execute(events.execution_options(yield_per=500)):
        data = data or {}
        record_id = data.get("record_id")
        if isinstance(record_id, str):
            first = named[record_id][3] if record_id in named else audit_id
            named[record_id] = (event_id, data.get(DIGEST_KEY), data.get(STAMPS_KEY) is True,
                                first)
    return named


def _sealed_stamps(session: Session, organization_id: str | None,
                   ) -> dict[str, dict[str, Any]]:
    """Record id -> the latest value each STAMPED field was given, by the stamp events in
    log order."""
    events = (select(AuditEvent.data).where(AuditEvent.action == STAMP_ACTION)
              .order_by(AuditEvent.id))
    if organization_id is not None:
        events = events.where(AuditEvent.organization_id == organization_id)
    sealed: dict[str, dict[str, Any]] = {}
    for data in session.scalars(events.execution_options(yield_per=500)):
        records = (data or {}).get("records")
        for record_id, fields in (records.items() if isinstance(records, dict) else ()):
            if isinstance(fields, dict):
                sealed.setdefault(record_id, {}).update(fields)
    return sealed


def _stamp_problem(rec: DeprovisionRecord, sealed: dict[str, Any]) -> str | None:
    """Which STAMPED field differs from what the stamp events gave it (None where none)."""
    for name in STAMPED:
        held, given = canonical_value(getattr(rec, name)), sealed.get(name)
        if held != given:
            return (f"the record's {name} is {held!r}, its audit events sealed "
                    f"{given!r}: it was changed")
    return None


def record_problem(session: Session, rec: DeprovisionRecord) -> str | None:
    """What is wrong with one record against its audit events (``verify_records`` for one
    record, by the indexed subject columns), or None; a record written before digests
    existed passes. What a receipt checks before it signs."""
    events = session.scalars(select(AuditEvent.data).where(
        AuditEvent.subject_type == "user", AuditEvent.subject_id == rec.user_id,
        AuditEvent.organization_id == rec.organization_id,
        AuditEvent.action.in_(RECORD_ACTIONS)).order_by(AuditEvent.id))
    data = next((d for d in events if (d or {}).get("record_id") == rec.id), None)
    if data is None:
        return "no audit event names this record: it was added outside Roster"
    if data.get(DIGEST_KEY) is None:
        return None  # written before records were sealed
    if record_digest(rec) != data[DIGEST_KEY]:
        return "the record does not match the digest its audit event holds: it was changed"
    if data.get(STAMPS_KEY) is not True:
        return None
    # A stamp event names its record as the subject, or none when it stamps several.
    stamps = session.scalars(select(AuditEvent.data).where(
        AuditEvent.subject_type == "deprovision_record",
        or_(AuditEvent.subject_id == rec.id, AuditEvent.subject_id.is_(None)),
        AuditEvent.organization_id == rec.organization_id,
        AuditEvent.action == STAMP_ACTION).order_by(AuditEvent.id))
    sealed: dict[str, Any] = {}
    for stamp in stamps:
        fields = ((stamp or {}).get("records") or {}).get(rec.id)
        if isinstance(fields, dict):
            sealed.update(fields)
    return _stamp_problem(rec, sealed)
