"""Append audit events to a per-organization hash chain, inside the caller's transaction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, event, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import copy_json, flush_if_pending, new_id, utcnow
from app.models import AuditChainHead, AuditEvent, Organization
from app.models.audit import DEPLOYMENT_CHAIN
from app.models.lifecycle import DeprovisionRecord
from app.sql import fetch

GENESIS_HASH = "0" * 64
_COLUMNS = ("event_id", "chain", "seq", "organization_id", "occurred_at", "action",
            "actor_type", "actor_id", "subject_type", "subject_id", "request_id", "data",
            "prev_hash", "hash")
_INSERT_EVENT = insert(AuditEvent.__table__)  # the columns come from the parameters
_UPDATE_HEAD = (update(AuditChainHead.__table__)
                .where(AuditChainHead.__table__.c.chain == bindparam("b_chain"))
                .values(seq=bindparam("b_seq"), hash=bindparam("b_hash")))
# PostgreSQL: the head's UPDATE as a data-modifying WITH of the event's INSERT, one round trip
# instead of two for the usual single event (a WITH runs exactly once, to completion:
# https://www.postgresql.org/docs/current/queries-with.html#QUERIES-WITH-MODIFYING). The
# event's parameters are prefixed e_ so that none is taken for a column of the head.
_INSERT_EVENT_MOVING_HEAD = (insert(AuditEvent.__table__)
                             .values({name: bindparam(f"e_{name}") for name in _COLUMNS})
                             .add_cte(_UPDATE_HEAD.cte("moved_head")))

# The audit actions whose event names a deprovisioning record (data.record_id).
RECORD_ACTIONS = ("user:deprovision", "user:deprovision_failed")
# The record an event names takes the event's id as its position (``audit_id``): its place
# in commit order, which the record feed pages by (app/audit/record_feed.py). The event's id
# is known only once it is inserted, under its chain head's lock; the first event naming a
# record gives it (migration 0036 took the first for the earlier records too).
_RECORDS = DeprovisionRecord.__table__
_POSITION_RECORD = (
    update(_RECORDS)
    .where(_RECORDS.c.id == bindparam("b_record"),
           _RECORDS.c.organization_id == bindparam("b_org"),
           _RECORDS.c.user_id == bindparam("b_user"), _RECORDS.c.audit_id.is_(None))
    .values(audit_id=select(AuditEvent.__table__.c.id)
            .where(AuditEvent.__table__.c.event_id == bindparam("b_event"))
            .scalar_subquery()))


@dataclass(frozen=True)
class Actor:
    """Who made a change: a directory token, an API key, an operator at the CLI, the system."""

    type: str
    id: str | None = None
    request_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    # When the request that caused the change arrived (deprovisioning latency starts here).
    received_at: datetime | None = None
    # The IdP dialect detected on that request (e.g. "entra", "okta"), for the records.
    dialect: str | None = None


SYSTEM = Actor(type="system")


def chain_for(organization_id: str | None) -> str:
    """The chain an event belongs to: its organization, or the deployment chain."""
    return organization_id or DEPLOYMENT_CHAIN


def compute_hash(event: AuditEvent) -> str:
    """SHA-256 over the canonical JSON of every recorded field and the previous hash."""
    return hash_fields({name: getattr(event, name) for name in _HASHED})


# The fields an event's hash covers: all of them but the hash itself.
_HASHED = _COLUMNS[:-1]


def hash_fields(fields: dict[str, Any]) -> str:
    """``compute_hash`` of an event given as its column values (``occurred_at`` a datetime)."""
    body = {name: fields[name] for name in _HASHED}
    body["occurred_at"] = fields["occurred_at"].isoformat()
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass
class _Head:
    """A chain head this transaction holds locked: the last sequence number and hash."""

    seq: int
    hash: str


def _upsert_head(insert: Any) -> Any:
    table = AuditChainHead.__table__
    return (insert(table).values(chain=bindparam("h_chain"), seq=0, hash=GENESIS_HASH)
            .on_conflict_do_update(index_elements=["chain"], set_={"seq": table.c.seq})
            .returning(table.c.seq, table.c.hash))


# Built once per dialect: a statement object reused by every append is found in
# SQLAlchemy's compiled cache without building and hashing a new tree each time.
_UPSERT_HEAD = {"postgresql": _upsert_head(pg_insert), "sqlite": _upsert_head(sqlite_insert)}


def _select_head(connection: Connection, chain: str) -> _Head:
    """Create the chain head if missing, then lock it until the transaction ends, so
    appends to one chain are serialised."""
    # One upsert both creates a missing head and locks an existing one: ON CONFLICT DO
    # UPDATE locks the row like SELECT ... FOR UPDATE on PostgreSQL (SQLite has one writer
    # anyway), and RETURNING loads it. Core on the connection: no ORM object to track.
    stmt = _UPSERT_HEAD[connection.dialect.name]
    [(seq, hash_)] = fetch(connection, stmt, {"h_chain": chain})
    return _Head(seq, hash_)


# session.info key: (savepoint or None, event values) recorded and not yet appended.
_PENDING = "roster.audit.pending"


@event.listens_for(Session, "before_commit")
def _append_at_commit(session: Session) -> None:
    # A savepoint's commit only hands its events on to the enclosing transaction.
    if not session.in_nested_transaction():
        append_pending(session)


@event.listens_for(Session, "after_soft_rollback")
def _drop_rolled_back(session: Session, previous_transaction: Any) -> None:
    # A rollback to a savepoint takes the events recorded inside it along, and only those.
    if previous_transaction.nested and session.info.get(_PENDING):
        session.info[_PENDING] = [
            (scope, values) for scope, values in session.info[_PENDING]
            if not _within(scope, previous_transaction)]


def _within(scope: Any, transaction: Any) -> bool:
    while scope is not None:
        if scope is transaction:
            return True
        scope = scope.parent
    return False


@event.listens_for(Session, "after_transaction_end")
def _forget_pending(session: Session, transaction: Any) -> None:
    # The whole transaction is over: what it did not append (it rolled back) is gone.
    if transaction.parent is None:
        session.info.pop(_PENDING, None)


def append_pending(session: Session) -> None:
    """Lock each chain head with pending events, in chain order, and append the events in
    the order they were recorded: one UPDATE per head and one INSERT for the events (on
    PostgreSQL a single event's UPDATE and INSERT are one statement).

    ``record`` defers the append to here (commit time) so that a chain head, which
    serialises every appending transaction of its organization on PostgreSQL, stays locked
    only for these statements and the COMMIT, not for the rest of the request.
    """
    pending: list[tuple[Any, dict[str, Any]]] | None = session.info.pop(_PENDING, None)
    if not pending:
        return
    events = [values for _scope, values in pending]
    # A record its event names, too, must be in its table: the event gives it its position.
    flush_if_pending(session, (Organization, DeprovisionRecord))
    append_now(session.connection(), events)


def append_now(connection: Connection, events: list[dict[str, Any]]) -> None:
    """Append ``events`` (``event_values``) to their chains on ``connection``, in its
    transaction: what the commit of a session does, for a write made on a connection of its
    own (a deprovisioning record's commit stamp, app/lifecycle/records.py). The caller's
    other row locks must come before the chain heads, as everywhere."""
    heads: list[dict[str, Any]] = []
    for chain in sorted({values["chain"] for values in events}):
        head = _select_head(connection, chain)
        for values in events:
            if values["chain"] == chain:
                values["seq"], values["prev_hash"] = head.seq + 1, head.hash
                values["hash"] = hash_fields(values)
                head.seq, head.hash = values["seq"], values["hash"]
        heads.append({"b_chain": chain, "b_seq": head.seq, "b_hash": head.hash})
    if len(events) == 1 and connection.dialect.name == "postgresql":
        event = {f"e_{name}": events[0][name] for name in _COLUMNS}
        fetch(connection, _INSERT_EVENT_MOVING_HEAD, {**event, **heads[0]})
        _position_records(connection, events)
        return
    for moved in heads:
        fetch(connection, _UPDATE_HEAD, moved)
    if len(events) == 1:
        fetch(connection, _INSERT_EVENT, events[0])
    else:
        connection.execute(_INSERT_EVENT, events)
    _position_records(connection, events)


def _position_records(connection: Connection, events: list[dict[str, Any]]) -> None:
    """Give each deprovisioning record one of ``events`` names its position: that event's
    id, in the same transaction (the record was written before its event)."""
    named = [{"b_record": values["data"]["record_id"], "b_org": values["organization_id"],
              "b_user": values["subject_id"], "b_event": values["event_id"]}
             for values in events
             if values["action"] in RECORD_ACTIONS and values["subject_type"] == "user"
             and isinstance(values["data"].get("record_id"), str)]
    if len(named) == 1:
        fetch(connection, _POSITION_RECORD, named[0])
    elif named:
        connection.execute(_POSITION_RECORD, named)


def record(
    session: Session,
    *,
    organization_id: str | None,
    action: str,
    actor: Actor,
    subject_type: str,
    subject_id: str | None,
    data: dict[str, Any] | None = None,
) -> None:
    """Record one audit event on its organization's chain, in the caller's transaction.

    The event is taken now (its time, actor and data) and appended to the chain when the
    transaction commits (``append_pending``); it commits or rolls back with the caller's
    change, and a rollback to a savepoint drops the events recorded inside it.
    """
    values = event_values(organization_id=organization_id, action=action, actor=actor,
                          subject_type=subject_type, subject_id=subject_id, data=data)
    session.info.setdefault(_PENDING, []).append((session.get_nested_transaction(), values))


def event_values(*, organization_id: str | None, action: str, actor: Actor,
                 subject_type: str, subject_id: str | None,
                 data: dict[str, Any] | None = None) -> dict[str, Any]:
    """One event's column values as taken now, before its chain gives it seq and hashes."""
    return {
        "event_id": new_id(), "chain": chain_for(organization_id),
        "organization_id": organization_id, "occurred_at": utcnow(), "action": action,
        "actor_type": actor.type, "actor_id": actor.id, "subject_type": subject_type,
        "subject_id": subject_id, "request_id": actor.request_id,
        # A copy: the caller may go on changing its lists before the commit writes them.
        "data": copy_json(data) if data else {},
    }
