"""SCIM dialect counters, flight recorder, OAuth clients for IdPs (issue 5)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, JSONType, UTCDateTime, utcnow


class ScimRequest(Base):
    """One inbound SCIM request and its response, bodies redacted (the flight recorder)."""

    __tablename__ = "scim_requests"
    __table_args__ = (
        # Listing newest first and pruning beyond the count bound both walk this index.
        Index("ix_scim_requests_directory_id_id", "directory_id", "id"),
        Index("ix_scim_requests_created_at", "created_at"),
    )

    # An integer key gives a cheap, strictly increasing order for "newest N" and pruning.
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    directory_id: Mapped[str] = mapped_column(ForeignKey("directories.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    request_id: Mapped[str | None] = mapped_column(String(100))
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(1000))
    query: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[int] = mapped_column(Integer)
    duration_ms: Mapped[float] = mapped_column(Float)
    notes: Mapped[list[str]] = mapped_column(JSONType, default=list)
    user_agent: Mapped[str | None] = mapped_column(String(300))
    request_body: Mapped[str | None] = mapped_column(Text)
    response_body: Mapped[str | None] = mapped_column(Text)


class DialectNote(Base):
    """How often a directory's IdP needed one normalisation, and when it was last seen."""

    __tablename__ = "scim_dialect_notes"

    directory_id: Mapped[str] = mapped_column(
        ForeignKey("directories.id", ondelete="CASCADE"), primary_key=True
    )
    note: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class OAuthClient(Base):
    """OAuth 2.0 client credentials of a directory (RFC 6749 §4.4); the secret only hashed."""

    __tablename__ = "scim_oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    directory_id: Mapped[str] = mapped_column(
        ForeignKey("directories.id", ondelete="CASCADE"), index=True
    )
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    def describe(self) -> dict[str, Any]:
        """A secret-free summary for listings."""
        return {"client_id": self.client_id, "directory_id": self.directory_id,
                "created_at": self.created_at, "rotated_at": self.rotated_at,
                "revoked_at": self.revoked_at}
