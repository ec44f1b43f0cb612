"""SSO: login sessions and the tokens Roster issued (issue 8); lifecycle revokes them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow


class LoginSession(Base):
    """What Roster issued to the portal after a login; revocable."""

    __tablename__ = "login_sessions"
    __table_args__ = (Index("ix_login_sessions_user_id", "user_id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The SSO connection used to sign in (None for sessions made by other means).
    connection_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_reason: Mapped[str | None] = mapped_column(String(100))


class IssuedToken(Base):
    """An access or refresh token Roster issued, stored only as its SHA-256."""

    __tablename__ = "issued_tokens"
    __table_args__ = (
        Index("ix_issued_tokens_user_id", "user_id"),
        Index("ix_issued_tokens_session_id", "session_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str | None] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE")
    )
    # The user the token speaks for (None for client-credentials tokens of an IdP).
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    session_id: Mapped[str | None] = mapped_column(
        ForeignKey("login_sessions.id", ondelete="CASCADE")
    )
    # For OAuth client-credentials tokens of an IdP (issue 5): the directory it acts for.
    directory_id: Mapped[str | None] = mapped_column(
        ForeignKey("directories.id", ondelete="CASCADE"), index=True
    )
    client_id: Mapped[str] = mapped_column(String(200))
    token_type: Mapped[str] = mapped_column(String(20))  # access | refresh
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(1000), default="")
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
