"""Organizations (tenants) and their unit tree."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONType, UTCDateTime, new_id, utcnow
from app.sql import fold


class UnitKind(enum.StrEnum):
    """What a node of the organization tree stands for."""

    department = "department"
    cost_center = "cost_center"
    team = "team"
    location = "location"


class Organization(Base):
    """A customer business account: the tenant everything else belongs to."""

    __tablename__ = "organizations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    # Mapping policy and other per-tenant knobs (default role, leaver handling ...).
    policy: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    units: Mapped[list[Unit]] = relationship(back_populates="organization")


class Unit(Base):
    """A department, cost center, team or location; nested to any depth under its parent."""

    __tablename__ = "units"
    __table_args__ = (Index("ix_units_parent_id", "parent_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"))
    kind: Mapped[UnitKind] = mapped_column(
        Enum(UnitKind, native_enum=False, length=20, validate_strings=True)
    )
    name: Mapped[str] = mapped_column(String(200))
    path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    organization: Mapped[Organization] = relationship(back_populates="units")
    parent: Mapped[Unit | None] = relationship(remote_side=[id], back_populates="children")
    children: Mapped[list[Unit]] = relationship(back_populates="parent")


# The path ("Engineering/Tokyo") names a unit uniquely within its organization, in any case,
# as the mapping finds units (app/mapping/rules.py, UnitIndex); this also makes sibling
# names unique without relying on NULL parent semantics. fold(): lower(normalize(x, NFC))
# on PostgreSQL, roster_fold() on SQLite (app/sql.py). Migrations 0022, 0032.
Index("uq_units_org_path", Unit.organization_id, fold(Unit.path), unique=True)
