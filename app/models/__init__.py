"""SQLAlchemy models: the bottom layer. Import from here, never from a sibling's internals."""

# Modules whose tables are added by later issues register themselves on import.
from app.models import api, lifecycle, mapping, scim_ops, sso, sso_subjects  # noqa: F401
from app.models.access import Grant, Role
from app.models.audit import AuditChainHead, AuditEvent, OutboxEvent
from app.models.directory import (
    Directory,
    DirectoryToken,
    Group,
    GroupMemberVersion,
    Membership,
    User,
)
from app.models.organization import Organization, Unit

__all__ = [
    "AuditChainHead",
    "AuditEvent",
    "Directory",
    "DirectoryToken",
    "Grant",
    "Group",
    "GroupMemberVersion",
    "Membership",
    "Organization",
    "OutboxEvent",
    "Role",
    "Unit",
    "User",
]
