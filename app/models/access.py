"""The role catalog and grants: who holds which role in which unit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, new_id, utcnow


class Role(Base):
    """A named set of portal permissions with typed parameters, per organization."""

    __tablename__ = "roles"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(String(1000), default="")
    # A subset of app.mapping.catalog.PERMISSIONS.
    permissions: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # {"spending_limit": {"type": "money", "default": {"amount": "1000", "currency": "EUR"}}}
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    custom: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Grant(Base):
    """User U holds role R in unit X of organization O, and where that came from."""

    __tablename__ = "grants"
    __table_args__ = (
        UniqueConstraint("user_id", "unit_id", "role_id"),
        Index("ix_grants_organization_id_role_id", "organization_id", "role_id"),
        Index("ix_grants_unit_id", "unit_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"))
    role_id: Mapped[str] = mapped_column(ForeignKey("roles.id", ondelete="CASCADE"))
    # Effective parameter values (role defaults overridden by the deciding rule).
    parameters: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # "manual", "default" or "rule:<id>".
    source: Mapped[str] = mapped_column(String(100))
    # Why: which rule, group or attribute matched (for explanations).
    reason: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
