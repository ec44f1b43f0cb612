"""Mapping rules and their history (issue 6)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, new_id, utcnow


class MappingRule(Base):
    """One rule of an organization, stored as written (app/mapping/ruleset.py parses it)."""

    __tablename__ = "mapping_rules"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # The rule's name within its organization; grants cite it as source "rule:<key>".
    key: Mapped[str] = mapped_column(String(64))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(1000), default="")
    # The condition tree as written: {"group": ...}, {"attribute": ...}, {"all": [...]} ...
    match: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    role_key: Mapped[str] = mapped_column(String(64))
    # {"path": ...} | {"id": ...} | {"from_attribute": ..., "under": ...}, plus create/kind.
    unit: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class MappingRevision(Base):
    """A snapshot of an organization's whole rule set and policy each time it changed."""

    __tablename__ = "mapping_revisions"
    __table_args__ = (UniqueConstraint("organization_id", "number"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    number: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Totals of the grant diff the change caused (added, removed, updated, users_losing_all).
    summary: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    actor_type: Mapped[str] = mapped_column(String(50))
    actor_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
