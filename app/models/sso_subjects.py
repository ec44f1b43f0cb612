"""SSO subject links: the user an IdP's stable subject signed in first, per connection."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, UTCDateTime, new_id, utcnow


class SubjectLink(Base):
    """Connection C's stable subject S (OIDC ``sub``, a persistent SAML NameID) is user U.

    One subject per user and one user per subject on a connection (migration 0035). A row
    goes with its connection or its user (ON DELETE CASCADE); a deprovisioned or
    SCIM-deleted user's link gives way to the next user the subject signs in
    (app/sso/subject_links.py)."""

    __tablename__ = "sso_subject_links"
    __table_args__ = (
        UniqueConstraint("connection_id", "subject"),
        UniqueConstraint("connection_id", "user_id"),
        # A user's delete cascades here: found by the user without a scan.
        Index("ix_sso_subject_links_user_id", "user_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("sso_connections.id", ondelete="CASCADE"))
    # OIDC Core §2: at most 255 ASCII characters; SAML Core §8.3.7: at most 256.
    subject: Mapped[str] = mapped_column(String(500))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
