"""Deprovisioning records in commit order: the position of the audit event naming each.

A record's ``received_at`` is when its request arrived, long before its transaction may
commit (a lock waited for, a directory's disable deprovisioning thousands, a slow IdP
request): paged by (``received_at``, ``id``), a record received earlier and committed
later landed behind a cursor a reader already held, and was never read. Every record is
named by one audit event (``user:deprovision`` or ``user:deprovision_failed``, data
``record_id``: app/audit/sealed_records.py) appended in the record's own transaction as it
commits, under its organization's chain head (app/audit/log.py): within an organization
those events take their ids in commit order. Across organizations a reader bounds its page
by :func:`app.audit.horizon.settled_through`, as ``GET /api/v1/audit`` does.

Each record holds that position itself (``audit_id``, set as its event is appended, in the
record's transaction: app/audit/log.py), indexed with its organization: a page is read off
that index, and its records' events are fetched by id to check they name records. The position
was found by joining every record of the organization to the audit log by subject, whose
first page cost grew with the organization's count of records (bench/README.md).

A record that no audit event names (written outside Roster: ``roster audit verify``
reports it) has no position, and is not listed; nor is one whose ``audit_id`` is not the id
of an event naming a record (``roster audit verify`` reports a position that is not the id
of the event naming the record).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from app.audit.horizon import settled_through
from app.audit.log import RECORD_ACTIONS
from app.models import AuditEvent
from app.models.lifecycle import DeprovisionRecord

# The ordering column: the audit id of the event naming the record, held by the record.
POSITION = DeprovisionRecord.audit_id


def records_by_position(session: Session, organization_id: str | None) -> Select[Any]:
    """(record, position) of the records of one organization (or all), each at the audit
    id of its event; across organizations only up to the settled horizon (it may wait for
    audit appenders to commit, and raise lock_not_available: a 503 to retry)."""
    # The event by its primary key, for each record read off the index in order: a
    # subquery, which neither planner turns into a join. As a join, or with conditions
    # across the two tables (the event's user, organization, data.record_id against the
    # record's), they misjudged how many records pass and joined the whole organization, or
    # merged from the log's first event (bench/README.md). The position is written only
    # from the event naming the record (app/audit/log.py, migration 0036), and ``roster
    # audit verify`` checks that it is.
    named = select(AuditEvent.action).where(AuditEvent.id == POSITION).scalar_subquery()
    stmt = select(DeprovisionRecord, POSITION).where(named.in_(RECORD_ACTIONS))
    if organization_id is not None:
        return stmt.where(DeprovisionRecord.organization_id == organization_id)
    settled = settled_through(session)
    return stmt if settled is None else stmt.where(DeprovisionRecord.audit_id <= settled)
