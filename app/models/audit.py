"""Append-only audit events (hash-chained per organization) and the transactional outbox."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, new_id, utcnow

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a bigint identity.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

# Chain key of events that belong to no organization (deployment-level changes).
DEPLOYMENT_CHAIN = "deployment"


class AuditChainHead(Base):
    """The last sequence number and hash of one chain; locked to append in order."""

    __tablename__ = "audit_chain_heads"

    chain: Mapped[str] = mapped_column(String(36), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64))


class AuditEvent(Base):
    """One append-only audit record; ``hash`` covers the record and ``prev_hash``."""

    __tablename__ = "audit_events"
    __table_args__ = (
        UniqueConstraint("chain", "seq"),
        Index("ix_audit_events_organization_id_occurred_at", "organization_id", "occurred_at"),
        Index("ix_audit_events_subject", "subject_type", "subject_id"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    chain: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="RESTRICT")
    )
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Tag in the form noun:verb, e.g. "user:deprovision", "directory_token:create".
    action: Mapped[str] = mapped_column(String(100))
    actor_type: Mapped[str] = mapped_column(String(30))
    actor_id: Mapped[str | None] = mapped_column(String(100))
    subject_type: Mapped[str] = mapped_column(String(50))
    subject_id: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(100))
    # json, not jsonb, on PostgreSQL: the record's hash covers its data as serialised, and
    # jsonb keeps numbers' values but not their notation (a float 1e+17 reads back as the
    # integer 100000000000000000), so `roster audit verify` would call the record changed.
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class OutboxEvent(Base):
    """A change the portal must hear about, written in the same transaction as the change."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        Index("ix_outbox_events_organization_id_id", "organization_id", "id"),
        Index("ix_outbox_events_aggregate_id_id", "aggregate_id", "id"),
        Index("ix_outbox_events_txid", "txid", sqlite_where=text("txid IS NOT NULL"),
              postgresql_where=text("txid IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="RESTRICT")
    )
    # e.g. "user.created", "grant.removed"
    type: Mapped[str] = mapped_column(String(100))
    # The entity whose events must be delivered in order (usually the user).
    aggregate_id: Mapped[str | None] = mapped_column(String(36))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # PostgreSQL: the writing transaction's id, set by the server (migration 0014), for the
    # pull feed's snapshot windows (app/events/feed.py). NULL on SQLite, where ids become
    # visible in order.
    txid: Mapped[int | None] = mapped_column(BigInteger)
    # PostgreSQL: the writing cluster's system_identifier, set by the server (migration 0020):
    # a txid means something only on the cluster that wrote it (app/events/window.py). NULL
    # on SQLite.
    cluster_id: Mapped[int | None] = mapped_column(BigInteger)
