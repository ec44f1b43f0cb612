"""API keys of /api/v1 callers and the shared rate-limit counters (issue 3)."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow


class ApiRole(enum.StrEnum):
    """Who an API key speaks for; what each may do is declared in app/api/permissions.py."""

    operator = "operator"
    admin = "admin"
    auditor = "auditor"
    portal = "portal"


class ApiKey(Base):
    """An /api/v1 bearer key, stored only as its SHA-256; bound to one organization unless
    it is an operator key."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_organization_id_created_at", "organization_id",
                            "created_at"),
                      # Every key is an operator key or has its organization (migration 0033).
                      CheckConstraint("role = 'operator' OR organization_id IS NOT NULL",
                                      name="org_role_has_org"))

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    role: Mapped[ApiRole] = mapped_column(
        Enum(ApiRole, native_enum=False, length=20, validate_strings=True)
    )
    # NULL only for operator keys (the CHECK above; the service also refuses an operator
    # key with one).
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, shown in listings so a key can be recognised.
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RateLimitCounter(Base):
    """One fixed-window hit counter, shared by every app node through the database."""

    __tablename__ = "rate_limit_counters"

    # "<scope>:<sha256 of the credential>:<limit>", built by app/api/ratelimit.py.
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    # When the current window ends; the next hit after it starts a new window.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
