"""Deprovisioning records under the audit chain: each record's digest in its audit event.

A deprovisioning record (app/lifecycle/records.py) is a row of its own, outside the hash
chain. Its ``user:deprovision`` (or ``user:deprovision_failed``) audit event, written in the
same transaction, carries ``record_digest``: SHA-256 over the canonical JSON of the
record's fields as written (``SEALED``). The chain covers the event, so the event covers
the record: ``roster audit verify`` recomputes each digest and reports a record changed,
removed, or present without an event naming it (added outside Roster).

Not sealed: what is written after that transaction, by design: the commit stamp
(``revocation_committed_at``, ``latency_ms``, a second write once the revocation is
durable), ``batch_id`` (the mass-event guard, at commit) and ``restored_at`` (a later
reactivation). Records written before digests existed are checked for presence only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import AuditEvent
from app.models.lifecycle import DeprovisionRecord

DIGEST_KEY = "record_digest"
# The audit actions whose event names a deprovisioning record (data.record_id).
RECORD_ACTIONS = ("user:deprovision", "user:deprovision_failed")
# The fields fixed when the record is written, in the transaction of its audit event.
SEALED = ("id", "event_id", "organization_id", "user_id", "scim_id", "external_id",
          "user_name", "directory_id", "vendor", "dialect", "trigger", "reason",
          "actor_type", "actor_id", "request_id", "source_ip", "user_agent", "received_at",
          "applied_at", "state_before", "state_after", "sessions_revoked", "tokens_revoked",
          "grants_removed", "outcome", "error")


def record_digest(record: DeprovisionRecord) -> str:
    """SHA-256 (hex) over the canonical JSON of the record's ``SEALED`` fields."""
    body = {name: _canonical(getattr(record, name)) for name in SEALED}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """A value as it reads back from either database: a UTC timestamp as ISO 8601, and an
    integral float as an integer (PostgreSQL's jsonb keeps a number's value, not its
    notation: a float 1e+17 in the grants' parameters reads back as 100000000000000000)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
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
    events that name it: its digest, its presence, and that an event names it at all.

    The events themselves are the chain's to check (app/audit/verify.py)."""
    events = (select(AuditEvent.event_id, AuditEvent.data)
              .where(AuditEvent.action.in_(RECORD_ACTIONS)).order_by(AuditEvent.id))
    records = select(DeprovisionRecord).order_by(DeprovisionRecord.id)
    if organization_id is not None:
        events = events.where(AuditEvent.organization_id == organization_id)
        records = records.where(DeprovisionRecord.organization_id == organization_id)
    named: dict[str, tuple[str, str | None]] = {}
    for event_id, data in session.execute(events.execution_options(yield_per=500)):
        record_id = (data or {}).get("record_id")
        if isinstance(record_id, str):
            named[record_id] = (event_id, (data or {}).get(DIGEST_KEY))
    problems: list[RecordProblem] = []
    count = sealed = 0
    for record in session.scalars(records.execution_options(yield_per=500)):
        count += 1
        found = named.pop(record.id, None)
        if found is None:
            problems.append(RecordProblem(record.id, None, "no audit event names this "
                                          "record: it was added outside Roster"))
            continue
        event_id, digest = found
        if digest is None:
            continue  # written before records were sealed
        sealed += 1
        if record_digest(record) != digest:
            problems.append(RecordProblem(record.id, event_id, "the record does not match "
                                          "the digest its audit event holds: it was changed"))
    problems.extend(RecordProblem(record_id, event_id, "the audit event names a record "
                                  "the database no longer holds: it was removed")
                    for record_id, (event_id, _digest) in named.items())
    return RecordsReport(count, sealed, problems)
