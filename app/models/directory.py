"""Directories (SCIM connections), their bearer tokens, and the SCIM users and groups."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, JSONType, UTCDateTime, new_id, utcnow
from app.sql import fold


class Vendor(enum.StrEnum):
    """The IdP behind a directory; selects nothing by itself (dialects are detected)."""

    okta = "okta"
    entra = "entra"
    generic = "generic"


class DirectoryStatus(enum.StrEnum):
    """Whether a directory accepts SCIM traffic."""

    active = "active"
    disabled = "disabled"


class UserStatus(enum.StrEnum):
    """Lifecycle status of a provisioned user (SCIM ``active`` is derived from it)."""

    active = "active"
    suspended = "suspended"
    deprovisioned = "deprovisioned"
    deleted = "deleted"


def _enum(cls: type[enum.Enum]) -> Enum:
    return Enum(cls, native_enum=False, length=20, validate_strings=True)


class Directory(Base):
    """One SCIM connection from one IdP into one organization."""

    __tablename__ = "directories"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    vendor: Mapped[Vendor] = mapped_column(_enum(Vendor))
    status: Mapped[DirectoryStatus] = mapped_column(
        _enum(DirectoryStatus), default=DirectoryStatus.active
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    tokens: Mapped[list[DirectoryToken]] = relationship(back_populates="directory")


class DirectoryToken(Base):
    """A SCIM bearer token, stored only as its SHA-256; two may be valid for rotation."""

    __tablename__ = "directory_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    directory_id: Mapped[str] = mapped_column(
        ForeignKey("directories.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The first characters, shown in listings so an admin can tell tokens apart.
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    directory: Mapped[Directory] = relationship(back_populates="tokens")


class User(Base):
    """A SCIM User as the IdP sent it (RFC 7643 §4.1 and the enterprise extension §4.3)."""

    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_directory_external_id", "directory_id", "external_id"),
        # SCIM lists (never soft-deleted users) page in creation order. Partial, so that a
        # deep startIndex page skips live entries in the index alone instead of reading
        # each skipped user's row to test deleted_at.
        Index("ix_users_directory_live_created", "directory_id", "created_at", "id",
              sqlite_where=text("deleted_at IS NULL"),
              postgresql_where=text("deleted_at IS NULL")),
        Index("ix_users_manager_id", "manager_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    directory_id: Mapped[str] = mapped_column(ForeignKey("directories.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    external_id: Mapped[str | None] = mapped_column(String(500))
    user_name: Mapped[str] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    status: Mapped[UserStatus] = mapped_column(_enum(UserStatus), default=UserStatus.active)
    # name (RFC 7643 §4.1.1)
    name_formatted: Mapped[str | None] = mapped_column(String(500))
    family_name: Mapped[str | None] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(200))
    middle_name: Mapped[str | None] = mapped_column(String(200))
    honorific_prefix: Mapped[str | None] = mapped_column(String(50))
    honorific_suffix: Mapped[str | None] = mapped_column(String(50))
    display_name: Mapped[str | None] = mapped_column(String(500))
    nick_name: Mapped[str | None] = mapped_column(String(200))
    profile_url: Mapped[str | None] = mapped_column(String(1000))
    title: Mapped[str | None] = mapped_column(String(200))
    user_type: Mapped[str | None] = mapped_column(String(100))
    preferred_language: Mapped[str | None] = mapped_column(String(50))
    locale: Mapped[str | None] = mapped_column(String(50))
    timezone: Mapped[str | None] = mapped_column(String(100))
    # Multi-valued attributes (RFC 7643 §4.1.2), stored as sent: lists of objects.
    emails: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    phone_numbers: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    ims: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    photos: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    addresses: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    entitlements: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    roles: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    x509_certificates: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    # The primary (else first) email, lower-cased: indexed for login matching and filters.
    primary_email: Mapped[str | None] = mapped_column(String(500), index=True)
    # Enterprise extension (RFC 7643 §4.3)
    employee_number: Mapped[str | None] = mapped_column(String(100))
    cost_center: Mapped[str | None] = mapped_column(String(200))
    organization_name: Mapped[str | None] = mapped_column(String(200))
    division: Mapped[str | None] = mapped_column(String(200))
    department: Mapped[str | None] = mapped_column(String(200))
    manager_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    # A manager reference as the IdP sent it, naming no user of the directory yet (Okta's
    # managerId); linked into manager_id when that user arrives. Never both set.
    manager_ref: Mapped[str | None] = mapped_column(String(500))
    # Extension schemas we do not model, keyed by schema URN, kept as sent.
    extension_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    # Only set when scim.store_password_hash is on; never returned (RFC 7643 §4.1.1).
    password_hash: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # What other resources show of this user (its reports' ``manager``): whether at all (a
    # SCIM delete hides it, a restore shows it) and its display (displayName, else
    # userName). Moved, with when, by each change of that: part of each report's version
    # and lastModified, which a change of its manager does not write (app/directory/versions.py).
    shown_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    shown_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What this user shows of its groups (``groups``: each one's id and displayName): how
    # often, and when last, a group write changed that without writing the user (added or
    # removed it, renamed or deleted one of its groups). Bumped under the user's row lock,
    # which the group write takes anyway; part of its version and lastModified
    # (app/directory/versions.py).
    groups_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    groups_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # What this user shows of its access (the read-only access extension's ``grants``): how
    # often, and when last, an evaluation changed its grants in a transaction that did not
    # move its own ``version`` (a rule-set apply, a unit added for a rule, a group write).
    # Bumped under the user's row lock, which the evaluation holds already; part of its
    # version and lastModified (app/directory/versions.py).
    access_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    access_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Soft delete (SCIM DELETE): hidden from SCIM at once, purged after retention.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The userName a soft-deleted user gave up to a new user (its own became "<id>.deleted",
    # app/directory/user_names.py); a reactivation takes it back while it is free.
    released_user_name: Mapped[str | None] = mapped_column(String(500))

    manager: Mapped[User | None] = relationship(remote_side=[id])


class Group(Base):
    """A SCIM Group (RFC 7643 §4.2); members live in :class:`Membership`, never loaded whole."""

    __tablename__ = "groups"
    __table_args__ = (
        Index("ix_groups_directory_external_id", "directory_id", "external_id"),
        Index("ix_groups_directory_created", "directory_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    directory_id: Mapped[str] = mapped_column(ForeignKey("directories.id", ondelete="CASCADE"))
    organization_id: Mapped[str] = mapped_column(
        ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    display_name: Mapped[str] = mapped_column(String(500))
    external_id: Mapped[str | None] = mapped_column(String(500))
    extension_data: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GroupMemberVersion(Base):
    """How often, and when last, a group's live members changed without a write to the group:
    a member's SCIM delete hides it, its restore shows it again (app/directory/versions.py). Part
    of the group's version and lastModified; kept apart from the group's row, which the
    member's delete may not lock (the lock order, app/mapping/reevaluation.py)."""

    __tablename__ = "group_member_versions"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer)
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Membership(Base):
    """One row per (group, user): adding a member touches one row, indexed both ways."""

    __tablename__ = "memberships"
    __table_args__ = (Index("ix_memberships_user_id_group_id", "user_id", "group_id"),)

    group_id: Mapped[str] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


# userName is caseExact=false (RFC 7643 §4.1.1): unique case-insensitively per directory.
# fold(): lower(normalize(x, NFC)) on PostgreSQL, a Unicode roster_fold() on SQLite (app/sql.py).
Index("uq_users_directory_username", User.directory_id, fold(User.user_name), unique=True)
Index("uq_groups_directory_display_name", Group.directory_id, fold(Group.display_name),
      unique=True)
# The users whose manager reference names no user yet, by that reference folded: what a
# new or renamed user looks up to link its reports (app/directory/managers.py).
Index("ix_users_pending_manager", User.directory_id, fold(User.manager_ref),
      sqlite_where=text("manager_ref IS NOT NULL"),
      postgresql_where=text("manager_ref IS NOT NULL"))
