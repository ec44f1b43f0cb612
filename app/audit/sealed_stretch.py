"""The deprovisioning records of one stretch of a chain: ``verify_records`` in bounded steps.

``GET /api/v1/audit/verify`` checks a chain in stretches of at most ``limit`` records
(app/audit/verify.py). Checking every deprovisioning record at the last stretch read all of
an organization's records, record events and stamp events in one request, however long the
log. Each stretch now checks its own share, so that a whole run of stretches checks what
``verify_records`` checks (app/audit/sealed_records.py), and one request reads about what
its stretch holds:

- the records that the stretch's ``user:deprovision`` / ``user:deprovision_failed``
  events name: each present (else removed) and matching its digest; for a record whose
  event seals its stamps, a value in a stamped field must have a stamp event giving it;
- the stamps that the stretch's ``deprovision_record:stamp`` events give: the record must
  hold the latest value given (a later stamp of the same field is that later stretch's);
- the records received within the stretch's time window, from the latest ``occurred_at``
  of the records up to ``after_seq`` (none before the first stretch) to the latest up to
  its last record (none after the last stretch): each must be named by an event (else
  added outside Roster). The windows of consecutive stretches meet and never overlap,
  however ``occurred_at`` goes along the chain (``window_start``), so each record is in
  exactly one. A run passes each stretch's window end on to the next, which need not
  read the chain before it to find where its window starts.

What lies beyond the stretch is looked up only where needed, through indexes where there
are: a record's event by its user (the subject), a stamp of one record by the record (the
subject); stamps of several records at once (no subject) are read on from the stretch and
the reading stops once every stamp looked for is found, which on an untouched log is in the
next few transactions (a commit stamp follows its record at once, a batch's soon after).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.log import chain_for
from app.audit.sealed_records import (
    DIGEST_KEY,
    RECORD_ACTIONS,
    STAMP_ACTION,
    STAMPED,
    STAMPS_KEY,
    RecordProblem,
    RecordsReport,
    canonical_value,
    record_digest,
)
from app.models import AuditEvent
from app.models.lifecycle import DeprovisionRecord

_CHUNK = 500
Named = tuple[str, str | None, bool, int]  # event id, digest, stamps sealed, seq


@dataclass
class _Stretch:
    """What the stretch's own events say about deprovisioning records."""

    named: dict[str, Named] = field(default_factory=dict)
    # (record id, field) -> the latest value the stretch's stamp events gave it.
    stamps: dict[tuple[str, str], Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StretchRecords:
    """The records check of one stretch, and where the next stretch's window starts."""

    report: RecordsReport
    # The latest occurred_at up to the stretch's last record (None after the last stretch):
    # the ``since`` of the stretch after it.
    until: datetime | None


def verify_records_stretch(session: Session, organization_id: str, after_seq: int,
                           last_seq: int, last: bool,
                           since: datetime | None) -> StretchRecords:
    """Check the deprovisioning records of the stretch ``(after_seq, last_seq]`` of the
    organization's chain, ``last`` when it reached the chain head, its time window starting
    after ``since`` (``window_start``; the ``until`` of the stretch before; None for the
    first stretch). Module docstring."""
    chain = chain_for(organization_id)
    stretch = _read_stretch(session, chain, after_seq, last_seq)
    records = _records(session, organization_id,
                       set(stretch.named) | {r for r, _f in stretch.stamps})
    problems: dict[str, RecordProblem] = {}
    checked = sealed = 0
    unstamped: set[tuple[str, str]] = set()
    for record_id, (event_id, digest, stamps_sealed, _seq) in stretch.named.items():
        rec = records.get(record_id)
        if rec is None:
            problems[record_id] = RecordProblem(record_id, event_id, "the audit event names "
                                                "a record the database no longer holds: "
                                                "it was removed")
            continue
        checked += 1
        if digest is None:
            continue  # written before records were sealed
        sealed += 1
        if record_digest(rec) != digest:
            problems[record_id] = RecordProblem(record_id, event_id, "the record does not "
                                                "match the digest its audit event holds: "
                                                "it was changed")
        elif stamps_sealed:
            unstamped |= {(record_id, name) for name in STAMPED
                          if getattr(rec, name) is not None
                          and (record_id, name) not in stretch.stamps}
    found = _stamped_later(session, organization_id, chain, last_seq, unstamped)
    for record_id, name in sorted(unstamped - found):
        problems.setdefault(record_id, _stamp_problem(
            records[record_id], name, None, stretch.named[record_id][0]))
    _check_stamps(session, organization_id, chain, last_seq, stretch, records, problems)
    until = None if last else _window_end(session, chain, after_seq, last_seq, since)
    added = _unnamed(session, organization_id, (since, until), stretch.named)
    checked += len(added)
    for record_id in added:
        problems.setdefault(record_id, RecordProblem(record_id, None, "no audit event names "
                                                     "this record: it was added outside "
                                                     "Roster"))
    return StretchRecords(RecordsReport(checked, sealed, list(problems.values())), until)


def _read_stretch(session: Session, chain: str, after_seq: int, last_seq: int) -> _Stretch:
    """The record and stamp events of the stretch, in seq order (the (chain, seq) index)."""
    stretch = _Stretch()
    events = (select(AuditEvent.seq, AuditEvent.event_id, AuditEvent.action, AuditEvent.data)
              .where(AuditEvent.chain == chain, AuditEvent.seq > after_seq,
                     AuditEvent.seq <= last_seq,
                     AuditEvent.action.in_((*RECORD_ACTIONS, STAMP_ACTION)))
              .order_by(AuditEvent.seq))
    for seq, event_id, action, data in session.execute(events.execution_options(
            yield_per=_CHUNK)):
        data = data or {}
        if action == STAMP_ACTION:
            for record_id, fields in _stamped(data):
                for name, value in fields.items():
                    stretch.stamps[(record_id, name)] = value
        elif isinstance(data.get("record_id"), str):
            stretch.named[data["record_id"]] = (event_id, data.get(DIGEST_KEY),
                                                data.get(STAMPS_KEY) is True, seq)
    return stretch


def _stamped(data: dict[str, Any]) -> Iterable[tuple[str, dict[str, Any]]]:
    """(record id, the STAMPED fields given) of one stamp event's data."""
    records = data.get("records")
    for record_id, fields in (records.items() if isinstance(records, dict) else ()):
        if isinstance(fields, dict):
            yield record_id, {k: v for k, v in fields.items() if k in STAMPED}


def _records(session: Session, organization_id: str,
             ids: set[str]) -> dict[str, DeprovisionRecord]:
    """The organization's records of ``ids``, by id (primary key look-ups, in chunks)."""
    wanted, found = sorted(ids), {}
    for start in range(0, len(wanted), _CHUNK):
        found.update((rec.id, rec) for rec in session.scalars(select(DeprovisionRecord).where(
            DeprovisionRecord.id.in_(wanted[start:start + _CHUNK]),
            DeprovisionRecord.organization_id == organization_id)))
    return found


def _check_stamps(session: Session, organization_id: str, chain: str, last_seq: int,
                  stretch: _Stretch, records: dict[str, DeprovisionRecord],
                  problems: dict[str, RecordProblem]) -> None:
    """Each (record, field) the stretch stamps last: the record holds the value given,
    unless a later stamp gave another (that later stretch checks it). Only records whose
    event seals their stamps."""
    differing = {(record_id, name): value
                 for (record_id, name), value in stretch.stamps.items()
                 if record_id in records
                 and canonical_value(getattr(records[record_id], name)) != value}
    if not differing:
        return
    naming = _naming_events(session, organization_id,
                            [records[r] for r, _n in differing], stretch.named)
    differing = {key: value for key, value in differing.items()
                 if naming.get(key[0], (None, None, False))[2]}
    later = _stamped_later(session, organization_id, chain, last_seq, set(differing))
    for (record_id, name), value in sorted(differing.items()):
        if (record_id, name) not in later:
            problems.setdefault(record_id, _stamp_problem(
                records[record_id], name, value, naming[record_id][0]))


def _stamp_problem(rec: DeprovisionRecord, name: str, given: Any,
                   event_id: str | None) -> RecordProblem:
    """The problem ``verify_records`` names for a stamped field that differs."""
    held = canonical_value(getattr(rec, name))
    return RecordProblem(rec.id, event_id, f"the record's {name} is {held!r}, its audit "
                         f"events sealed {given!r}: it was changed")


def _naming_events(session: Session, organization_id: str, recs: list[DeprovisionRecord],
                   named: dict[str, Named]) -> dict[str, Named]:
    """The event naming each record: the stretch's, else found by the record's user (the
    event's subject, indexed)."""
    out = {rec.id: named[rec.id] for rec in recs if rec.id in named}
    users = sorted({rec.user_id for rec in recs if rec.id not in named})
    for start in range(0, len(users), _CHUNK):
        for seq, event_id, data in session.execute(select(
                AuditEvent.seq, AuditEvent.event_id, AuditEvent.data).where(
                AuditEvent.subject_type == "user",
                AuditEvent.subject_id.in_(users[start:start + _CHUNK]),
                AuditEvent.organization_id == organization_id,
                AuditEvent.action.in_(RECORD_ACTIONS))):
            data = data or {}
            if isinstance(data.get("record_id"), str) and data["record_id"] not in named:
                out[data["record_id"]] = (event_id, data.get(DIGEST_KEY),
                                          data.get(STAMPS_KEY) is True, seq)
    return out


def _stamped_later(session: Session, organization_id: str, chain: str, after_seq: int,
                   wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which (record, field) of ``wanted`` a stamp event after ``after_seq`` gives: stamps
    of one record by the record (the subject, indexed), then those of several records read
    on in seq order until every one wanted is found."""
    found: set[tuple[str, str]] = set()
    if not wanted:
        return found
    ids = sorted({record_id for record_id, _name in wanted})
    base = select(AuditEvent.data).where(AuditEvent.subject_type == "deprovision_record",
                                         AuditEvent.organization_id == organization_id,
                                         AuditEvent.action == STAMP_ACTION)
    for start in range(0, len(ids), _CHUNK):
        single = base.where(AuditEvent.subject_id.in_(ids[start:start + _CHUNK]),
                            AuditEvent.chain == chain, AuditEvent.seq > after_seq)
        for data in session.scalars(single):
            found |= _given(data or {}, wanted)
    if wanted <= found:
        return found
    several = (base.where(AuditEvent.subject_id.is_(None), AuditEvent.chain == chain,
                          AuditEvent.seq > after_seq)
               .order_by(AuditEvent.seq).execution_options(yield_per=_CHUNK))
    for data in session.scalars(several):
        found |= _given(data or {}, wanted)
        if wanted <= found:
            break
    return found


def _given(data: dict[str, Any], wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    return {(record_id, name) for record_id, fields in _stamped(data) for name in fields
            if (record_id, name) in wanted}


def window_start(session: Session, organization_id: str, after_seq: int) -> datetime | None:
    """Where the time window of the stretch after ``after_seq`` starts: the latest
    ``occurred_at`` of the records up to ``after_seq`` (None for the first stretch).

    An event's time is taken when its change is made and its seq when its transaction
    commits, so ``occurred_at`` can go backwards along the chain; its running maximum does
    not, and so the windows of any run of stretches partition time: a record received at
    any time falls in exactly one. (The time of the record at ``after_seq`` made the window
    of a stretch after an event linked late start before earlier ones ended, and a record
    added then was counted twice.) This reads every record up to ``after_seq``: a run of
    stretches passes each stretch's ``until`` on instead (``plausible_window_start``)."""
    if not after_seq:
        return None
    return session.scalar(select(func.max(AuditEvent.occurred_at)).where(
        AuditEvent.chain == chain_for(organization_id), AuditEvent.seq <= after_seq))


def plausible_window_start(session: Session, organization_id: str, after_seq: int,
                           since: datetime) -> bool:
    """Whether ``since`` (given back by a client as the previous stretch's ``until``) can be
    ``window_start``: a record up to ``after_seq`` occurred then, and the record at
    ``after_seq`` did not occur later. Two index look-ups; a value from another run or
    another seq is caught, not one made up to equal such a record's time."""
    chain = chain_for(organization_id)
    at = session.scalar(select(AuditEvent.occurred_at).where(
        AuditEvent.chain == chain, AuditEvent.seq == after_seq))
    if at is None or at > since:
        return False
    return session.scalar(select(AuditEvent.seq).where(
        AuditEvent.organization_id == organization_id, AuditEvent.occurred_at == since,
        AuditEvent.chain == chain, AuditEvent.seq <= after_seq).limit(1)) is not None


def _window_end(session: Session, chain: str, after_seq: int, last_seq: int,
                since: datetime | None) -> datetime | None:
    """The latest ``occurred_at`` up to ``last_seq``: that of the stretch's own records, or
    ``since`` when later (``window_start``)."""
    until = session.scalar(select(func.max(AuditEvent.occurred_at)).where(
        AuditEvent.chain == chain, AuditEvent.seq > after_seq, AuditEvent.seq <= last_seq))
    if since is None or until is None:
        return until or since
    return max(since, until)


def _unnamed(session: Session, organization_id: str,
             window: tuple[datetime | None, datetime | None],
             named: dict[str, Named]) -> list[str]:
    """The records received within ``window`` that no audit event names (the stretch's
    events, else any found by the record's user)."""
    since, until = window
    stmt = select(DeprovisionRecord).where(
        DeprovisionRecord.organization_id == organization_id).order_by(
        DeprovisionRecord.received_at, DeprovisionRecord.id)
    if since is not None:
        stmt = stmt.where(DeprovisionRecord.received_at > since)
    if until is not None:
        stmt = stmt.where(DeprovisionRecord.received_at <= until)
    others = [rec for rec in session.scalars(stmt) if rec.id not in named]
    elsewhere = _naming_events(session, organization_id, others, {})
    return [rec.id for rec in others if rec.id not in elsewhere]
