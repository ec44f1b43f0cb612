"""Append audit events to a per-organization hash chain, inside the caller's transaction."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, event, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from app.db import flush_if_pending, new_id, utcnow
from app.models import AuditChainHead, AuditEvent, Organization
from app.models.audit import DEPLOYMENT_CHAIN
from app.sql import fetch

GENESIS_HASH = "0" * 64
_COLUMNS = ("event_id", "chain", "seq", "organization_id", "occurred_at", "action",
            "actor_type", "actor_id", "subject_type", "subject_id", "request_id", "data",
            "prev_hash", "hash")
_INSERT_EVENT = insert(AuditEvent.__table__)  # the columns come from the parameters
_UPDATE_HEAD = (update(AuditChainHead.__table__)
                .where(AuditChainHead.__table__.c.chain == bindparam("b_chain"))
                .values(seq=bindparam("b_seq"), hash=bindparam("b_hash")))


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


# session.info key: chain heads this transaction already holds locked.
_LOCKED_HEADS = "roster.audit.locked_heads"


@dataclass
class _Head:
    """A chain head this transaction holds locked: the last sequence number and hash."""

    seq: int
    hash: str


def _lock_head(session: Session, chain: str) -> _Head:
    """Create the chain head if missing, then lock it so appends are serialized per chain.

    The lock lasts until the transaction ends, so later appends in the same transaction
    reuse the locked row instead of asking again (a deprovisioning appends several).
    """
    held: dict[str, _Head] = session.info.setdefault(_LOCKED_HEADS, {})
    if chain in held:
        return held[chain]
    held[chain] = head = _select_head(session, chain)
    return head


def _upsert_head(insert: Any) -> Any:
    table = AuditChainHead.__table__
    return (insert(table).values(chain=bindparam("h_chain"), seq=0, hash=GENESIS_HASH)
            .on_conflict_do_update(index_elements=["chain"], set_={"seq": table.c.seq})
            .returning(table.c.seq, table.c.hash))


# Built once per dialect: a statement object reused by every append is found in
# SQLAlchemy's compiled cache without building and hashing a new tree each time.
_UPSERT_HEAD = {"postgresql": _upsert_head(pg_insert), "sqlite": _upsert_head(sqlite_insert)}


def _select_head(session: Session, chain: str) -> _Head:
    # One upsert both creates a missing head and locks an existing one: ON CONFLICT DO
    # UPDATE locks the row like SELECT ... FOR UPDATE on PostgreSQL (SQLite has one writer
    # anyway), and RETURNING loads it. Core on the connection: no ORM object to track.
    connection = session.connection()
    stmt = _UPSERT_HEAD[connection.dialect.name]
    [(seq, hash_)] = fetch(connection, stmt, {"h_chain": chain})
    return _Head(seq, hash_)


@event.listens_for(Session, "after_commit")
@event.listens_for(Session, "after_rollback")
@event.listens_for(Session, "after_soft_rollback")
def _release_heads(session: Session, *_args: Any) -> None:
    session.info.pop(_LOCKED_HEADS, None)


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
    """Append one audit event to its organization's chain; the caller's transaction commits it."""
    chain = chain_for(organization_id)
    head = _lock_head(session, chain)
    # Plain values, not an AuditEvent: the row goes in with Core statements at once, and an
    # ORM object would only be built to be read back (an event per column set).
    values = {
        "event_id": new_id(), "chain": chain, "seq": head.seq + 1,
        "organization_id": organization_id, "occurred_at": utcnow(), "action": action,
        "actor_type": actor.type, "actor_id": actor.id, "subject_type": subject_type,
        "subject_id": subject_id, "request_id": actor.request_id, "data": data or {},
        "prev_hash": head.hash,
    }
    values["hash"] = hash_fields(values)
    head.seq, head.hash = values["seq"], values["hash"]
    flush_if_pending(session, Organization)
    connection = session.connection()
    fetch(connection, _INSERT_EVENT, values)
    fetch(connection, _UPDATE_HEAD, {"b_chain": chain, "b_seq": values["seq"],
                                     "b_hash": values["hash"]})
