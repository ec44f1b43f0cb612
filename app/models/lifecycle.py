"""Deprovisioning records, mass-event batches, signed checkpoints, webhook deliveries (issue 7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, new_id, utcnow
from app.models.audit import BigIntId


class DeprovisionBatch(Base):
    """Deprovisionings of one directory grouped by the mass-event guard; restorable at once."""

    __tablename__ = "deprovision_batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="RESTRICT"), index=True
    )
    directory_id: Mapped[str | None] = mapped_column(String(36), index=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    count: Mapped[int] = mapped_column(Integer, default=0)
    # Directory size when the guard fired (the share is computed against it).
    directory_users: Mapped[int] = mapped_column(Integer, default=0)
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    restored_by: Mapped[str | None] = mapped_column(String(100))


class DeprovisionRecord(Base):
    """One deprovisioning: who, why, when (received / applied / committed), before and after.

    Kept when the user is purged (no foreign key to users): it is part of the audit trail.
    """

    __tablename__ = "deprovision_records"
    __table_args__ = (
        Index("ix_deprovision_records_organization_id_received_at",
              "organization_id", "received_at"),
        Index("ix_deprovision_records_directory_id_received_at", "directory_id", "received_at"),
        Index("ix_deprovision_records_user_id", "user_id"),
        # The record feed's order (app/audit/record_feed.py): one organization's, and all.
        Index("ix_deprovision_records_organization_id_audit_id", "organization_id", "audit_id"),
        Index("uq_deprovision_records_audit_id", "audit_id", unique=True),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # The outbox event id of the user.deprovisioned event this record belongs to.
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="RESTRICT")
    )
    user_id: Mapped[str] = mapped_column(String(36))
    scim_id: Mapped[str] = mapped_column(String(36))
    external_id: Mapped[str | None] = mapped_column(String(500))
    user_name: Mapped[str] = mapped_column(String(500))
    directory_id: Mapped[str | None] = mapped_column(String(36))
    vendor: Mapped[str | None] = mapped_column(String(20))
    dialect: Mapped[str | None] = mapped_column(String(100))
    trigger: Mapped[str] = mapped_column(String(40))
    # An operator's words (CLI --reason, API "reason"): why the user was taken out.
    reason: Mapped[str | None] = mapped_column(String(500))
    actor_type: Mapped[str] = mapped_column(String(30))
    actor_id: Mapped[str | None] = mapped_column(String(100))
    request_id: Mapped[str | None] = mapped_column(String(100))
    source_ip: Mapped[str | None] = mapped_column(String(100))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    applied_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Stamped right after the transaction that revoked everything committed.
    revocation_committed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    latency_ms: Mapped[float | None] = mapped_column(Float)
    state_before: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    state_after: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    sessions_revoked: Mapped[int] = mapped_column(Integer, default=0)
    tokens_revoked: Mapped[int] = mapped_column(Integer, default=0)
    grants_removed: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(20), default="applied")
    error: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[str | None] = mapped_column(
        ForeignKey("deprovision_batches.id", ondelete="SET NULL"), index=True
    )
    # Set when a reactivation restored the user (the record itself stays as it was).
    restored_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The id of the audit event naming this record (``user:deprovision`` or
    # ``user:deprovision_failed``), set as that event is appended, in the record's own
    # transaction (app/audit/log.py): the record's position in commit order, which the
    # record feed pages by (migration 0036 filled it in for earlier records). NULL: no
    # audit event names the record (written outside Roster).
    audit_id: Mapped[int | None] = mapped_column(BigInteger)


class AuditCheckpoint(Base):
    """A chain head signed with the deployment's Ed25519 key at one moment."""

    __tablename__ = "audit_checkpoints"
    __table_args__ = (Index("ix_audit_checkpoints_chain_seq", "chain", "seq"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    chain: Mapped[str] = mapped_column(String(36))
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(200))


class WebhookCursor(Base):
    """How far in the outbox deliveries were fanned out to one endpoint."""

    __tablename__ = "webhook_cursors"

    endpoint: Mapped[str] = mapped_column(String(1000), primary_key=True)
    # SQLite: the newest outbox id fanned out (ids become visible in id order there).
    last_outbox_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # PostgreSQL: the position in the outbox's transaction-id windows, as the pull feed's
    # cursor holds it (app/events/window.py FeedPosition.values()); NULL: from the start.
    position: Mapped[list[Any] | None] = mapped_column(JSONType, nullable=True)
    # The newest outbox purge (OutboxPurge.id) this cursor was checked against: a purge
    # after it that removed events the cursor had not passed holds the fan-out to this
    # endpoint (app/events/retention.py; migration 0021).
    purge_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class OutboxPurge(Base):
    """One batch of the outbox retention purge, per cluster: the newest outbox id and
    transaction id it deleted, so a cursor behind them is told, not silently moved on
    (app/events/retention.py; migration 0021). Its id is the purge epoch cursors carry."""

    __tablename__ = "outbox_purges"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    # PostgreSQL: the system_identifier of the rows' cluster; NULL on SQLite.
    cluster_id: Mapped[int | None] = mapped_column(BigInteger)
    max_id: Mapped[int] = mapped_column(BigInteger)
    # PostgreSQL: the newest txid among the deleted rows, and all of them (distinct): a
    # snapshot that lists one of them as in progress had not seen it. NULL on SQLite.
    max_txid: Mapped[int | None] = mapped_column(BigInteger)
    txids: Mapped[list[int] | None] = mapped_column(JSONType, nullable=True)
    events: Mapped[int] = mapped_column(Integer)
    purged_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # On the oldest mark kept: the newest epoch whose mark was pruned (migration 0023); a
    # cursor from before it is expired (app/events/watermark.py prune_purges).
    pruned_through: Mapped[int | None] = mapped_column(BigInteger)


class WebhookDelivery(Base):
    """One outbox event to one endpoint: pending, delivered or dead, with its attempts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("outbox_id", "endpoint"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint_aggregate_id_id", "endpoint", "aggregate_id", "id"),
        # Dead letters only (migration 0021): the fan-out's hold probes EXISTS(status='dead')
        # and groups the dead by aggregate every page once any exists.
        Index("ix_webhook_deliveries_dead", "endpoint", "aggregate_id", "id",
              sqlite_where=text("status = 'dead'"), postgresql_where=text("status = 'dead'")),
        # The retention purge of delivered deliveries by age (migration 0021). Status first:
        # SQLite then prefers it to (status, next_attempt_at), which reads every delivered.
        Index("ix_webhook_deliveries_status_delivered_at", "status", "delivered_at"),
    )

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True, autoincrement=True)
    outbox_id: Mapped[int] = mapped_column(
        ForeignKey("outbox_events.id", ondelete="CASCADE")
    )
    event_id: Mapped[str] = mapped_column(String(36))
    endpoint: Mapped[str] = mapped_column(String(1000))
    aggregate_id: Mapped[str | None] = mapped_column(String(36))
    # pending | delivered | dead
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # A worker's claim; another worker may take the row once the lease has passed.
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(1000))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
