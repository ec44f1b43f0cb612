"""The deprovisioning record: one row per deprovisioning, stamped when its revocation commits."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, event, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, SessionTransaction

from app.audit import Actor
from app.audit.log import append_now
from app.audit.sealed_records import stamp_values
from app.db import new_id, utcnow
from app.models import User
from app.models.lifecycle import DeprovisionRecord
from app.sql import among

log = logging.getLogger("roster.lifecycle")

# session.info keys: records whose revocation commits with this session's transaction, and
# (commit time, records) once it has committed.
_PENDING = "roster.lifecycle.pending_records"
_COMMITTED = "roster.lifecycle.committed_records"
# Built once: constructing the statement cost more than running it (one per deprovisioning).
_STAMP = (update(DeprovisionRecord).where(DeprovisionRecord.id == bindparam("b_id"))
          .values(revocation_committed_at=bindparam("b_at"), latency_ms=bindparam("b_ms")))
# Any number of ids in one parameter (a directory's disable stamps thousands at once).
_EXISTING = select(DeprovisionRecord.id).where(among(DeprovisionRecord.id))


def new_record(session: Session, user: User, actor: Actor, *, trigger: str,
               received_at: datetime, event_id: str, vendor: str | None,
               reason: str | None = None) -> DeprovisionRecord:
    """Start the record for one deprovisioning (the caller fills state and counts)."""
    record = DeprovisionRecord(
        id=new_id(), event_id=event_id, organization_id=user.organization_id,
        user_id=user.id, scim_id=user.id, external_id=user.external_id,
        user_name=user.user_name, directory_id=user.directory_id,
        vendor=vendor, dialect=actor.dialect,
        trigger=trigger, reason=reason, actor_type=actor.type, actor_id=actor.id,
        # The client's own strings, cut to their columns: a deprovisioning must never fail
        # on PostgreSQL because an IdP sent a 600-character User-Agent.
        request_id=actor.request_id, source_ip=_cut(actor.ip, DeprovisionRecord.source_ip),
        user_agent=_cut(actor.user_agent, DeprovisionRecord.user_agent),
        received_at=received_at, applied_at=received_at, outcome="applied",
        # Set now, not by the columns' defaults at the flush: the audit event's digest of
        # the record (app/audit/sealed_records.py) is taken before it.
        state_before={}, state_after={}, sessions_revoked=0, tokens_revoked=0,
        grants_removed=0, error=None,
    )
    session.add(record)
    return record


def _cut(value: str | None, column: Any) -> str | None:
    return value[:column.type.length] if value is not None else None


def stamp_on_commit(session: Session, record: DeprovisionRecord) -> None:
    """Remember the record so the commit time of its transaction is written right after."""
    session.info.setdefault(_PENDING, {})[record.id] = (record.received_at,
                                                        record.organization_id)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    # Also fired when a savepoint is released: the records wait for the outer commit.
    if session.in_nested_transaction():
        return
    pending: dict[str, tuple[datetime, str]] | None = session.info.pop(_PENDING, None)
    if pending:
        session.info[_COMMITTED] = (utcnow(), pending)


@event.listens_for(Session, "after_transaction_end")
def _stamp_committed(session: Session, transaction: SessionTransaction) -> None:
    """Write the commit time once the session has given its connection back.

    after_commit runs while the session still holds its connection: a stamp written there
    needed a second one, so a burst of deprovisionings larger than half the pool waited for
    connections the burst itself held. Here a pooled connection is back in the pool (the
    stamp takes it again), and a thread's own SQLite connection is idle (the stamp runs on it).
    """
    if transaction.parent is not None:
        return
    done: tuple[datetime, dict[str, tuple[datetime, str]]] | None = \
        session.info.pop(_COMMITTED, None)
    if done is None:
        return
    committed, pending = done
    params = [{"b_id": record_id, "b_at": committed,
               "b_ms": round((committed - received).total_seconds() * 1000, 3)}
              for record_id, (received, _org) in pending.items()]
    bind = session.get_bind()
    try:
        # The revocation is already durable; this second write only records when it became so.
        if isinstance(bind, Connection) and not bind.closed and not bind.in_transaction():
            with bind.begin():
                _write_stamps(bind, params, pending)
        else:
            with (bind if isinstance(bind, Engine) else bind.engine).begin() as conn:
                _write_stamps(conn, params, pending)
    except Exception:  # the record keeps applied_at; the report falls back to it
        log.exception("could not stamp revocation commit time on %d record(s)", len(pending))


def _write_stamps(connection: Connection, params: list[dict[str, Any]],
                  pending: dict[str, tuple[datetime, str]]) -> None:
    """The commit stamps, and in the same transaction their seal: one
    ``deprovision_record:stamp`` event per organization (app/audit/sealed_records.py).
    The records' rows first, then the chain heads: the lock order of every transaction
    (a mass-event guard writes earlier records before its own append)."""
    connection.execute(_STAMP, params)
    # Only records that exist: one made inside a savepoint rolled back is gone (``_forget``).
    written = set(connection.scalars(_EXISTING, {"ids": [row["b_id"] for row in params]}))
    by_org: dict[str, dict[str, dict[str, Any]]] = {}
    for row in params:
        if row["b_id"] not in written:
            continue
        by_org.setdefault(pending[row["b_id"]][1], {})[row["b_id"]] = {
            "revocation_committed_at": row["b_at"], "latency_ms": row["b_ms"]}
    if by_org:
        append_now(connection, [stamp_values(org, stamps)
                                for org, stamps in sorted(by_org.items())])


@event.listens_for(Session, "after_rollback")
def _forget(session: Session) -> None:
    # A savepoint's rollback keeps the records made before it; a record made inside it is
    # gone, and its stamp (an UPDATE by id) then changes nothing.
    if not session.in_nested_transaction():
        session.info.pop(_PENDING, None)
