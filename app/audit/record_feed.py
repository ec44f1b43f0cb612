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

A record that no audit event names (written outside Roster: ``roster audit verify``
reports it) has no position, and is not listed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, and_, select
from sqlalchemy.orm import Session

from app.audit.horizon import settled_through
from app.audit.sealed_records import RECORD_ACTIONS
from app.models import AuditEvent
from app.models.lifecycle import DeprovisionRecord

# The ordering column: the audit id of the event naming the record.
POSITION = AuditEvent.id


def records_by_position(session: Session, organization_id: str | None) -> Select[Any]:
    """(record, position) of the records of one organization (or all), each at the audit
    id of its event; across organizations only up to the settled horizon (it may wait for
    audit appenders to commit, and raise lock_not_available: a 503 to retry)."""
    # The event's subject is the record's user (app/lifecycle/users.py): the join can take
    # the subject index for each record instead of reading the whole log for the actions.
    stmt = select(DeprovisionRecord, POSITION).join(AuditEvent, and_(
        AuditEvent.subject_type == "user", AuditEvent.subject_id == DeprovisionRecord.user_id,
        AuditEvent.action.in_(RECORD_ACTIONS),
        AuditEvent.data["record_id"].as_string() == DeprovisionRecord.id,
        AuditEvent.organization_id == DeprovisionRecord.organization_id))
    if organization_id is not None:
        return stmt.where(AuditEvent.organization_id == organization_id,
                          DeprovisionRecord.organization_id == organization_id)
    settled = settled_through(session)
    return stmt if settled is None else stmt.where(AuditEvent.id <= settled)
