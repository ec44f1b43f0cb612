"""Directories: one SCIM connection from one IdP into one organization."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.directory.hold import (
    directory_active,
    hold_directory_status,
    hold_directory_status_trying,
)
from app.directory.names import ID_SHAPE, checked_name
from app.directory.uniqueness import flush_unique
from app.errors import Conflict, InvalidInput, NotFound, Unauthorized
from app.lifecycle.users import deprovision_directory_users
from app.mapping.locks import share_mapping, share_mapping_tried, try_shared_column
from app.models import Directory, Organization
from app.models.directory import DirectoryStatus, Vendor

# The name's unique index as PostgreSQL and SQLite name it in a violation.
_NAME_INDEX = ("uq_directories_organization_id_name", "directories.organization_id, "
               "directories.name")


def create_directory(session: Session, org: Organization, name: str, vendor: str,
                     actor: Actor) -> Directory:
    """Create a directory for ``org``; tokens are issued separately."""
    try:
        vendor_value = Vendor(vendor)
    except ValueError:
        names = ", ".join(v.value for v in Vendor)
        raise InvalidInput(f"vendor {vendor!r} is not one of {names}", field="vendor") from None
    checked_name(name, "directory name")
    if ID_SHAPE.match(name):
        raise InvalidInput(f"directory name {name!r} has the shape of an id; directories are "
                           "looked up by id or name, so it could name another one",
                           field="name")
    exists = session.scalar(
        select(Directory.id).where(Directory.organization_id == org.id, Directory.name == name)
    )
    taken = f"directory {name!r} already exists in {org.slug}"
    if exists:
        raise Conflict(taken, field="name")
    directory = Directory(organization_id=org.id, name=name, vendor=vendor_value,
                          status=DirectoryStatus.active)
    session.add(directory)
    flush_unique(session, _NAME_INDEX, taken, "name")  # a concurrent create of the name
    record(session, organization_id=org.id, action="directory:create", actor=actor,
           subject_type="directory", subject_id=directory.id,
           data={"name": name, "vendor": vendor_value.value})
    return directory


def get_directory(session: Session, ref: str, org: Organization | None = None) -> Directory:
    """Find a directory by id (or by name within ``org``)."""
    stmt = select(Directory).where(Directory.id == ref)
    if org is not None:
        # An id wins over a name that spells it (one stored before such names were
        # refused): the id always names its own directory.
        stmt = select(Directory).where(
            Directory.organization_id == org.id, (Directory.id == ref) | (Directory.name == ref)
        ).order_by((Directory.id == ref).desc()).limit(1)
    directory = session.scalar(stmt)
    if directory is None:
        raise missing_directory(ref)
    return directory


def missing_directory(ref: str) -> NotFound:
    """The 404 of an id that names no directory (and of another organization's)."""
    return NotFound(f"directory {ref!r} does not exist", field="directory")


def list_directories(session: Session, org: Organization) -> list[Directory]:
    """The directories of an organization, by name."""
    return list(session.scalars(
        select(Directory).where(Directory.organization_id == org.id).order_by(Directory.name)
    ))


def hold_active_directory(session: Session, directory_id: str, *,
                          status_read: bool = False, mapping_of: str | None = None) -> None:
    """Keep a directory from being disabled (or enabled) until this write transaction ends,
    and raise Unauthorized when it is disabled now (step 0 of the lock order, before any
    group or user row: ``app.directory.hold``).

    Authentication read the status before this transaction, or by a plain read in it: a
    disable committing meanwhile deprovisioned only the users it could see, and this
    transaction's users were left active, with their grants, in a directory whose tokens
    the IdP can no longer use to take them out. PostgreSQL: ``FOR SHARE`` (waits for a
    disable in flight, then reads its outcome). SQLite: ``status_read`` (authentication read
    the status in this very transaction, which holds the single write lock) leaves nothing
    to check.

    ``mapping_of``: then hold that organization's mapping lock shared too, next in the lock
    order (``app.mapping.locks.share_mapping``); on PostgreSQL its try is a column of the
    statement that holds the row, and only a failed try costs more (the bounded wait).
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and mapping_of is not None:
        status, granted = hold_directory_status_trying(session, directory_id,
                                                       try_shared_column(mapping_of))
        if not directory_active(status):
            raise Unauthorized("the directory of this token is disabled")
        share_mapping_tried(session, mapping_of, granted)
        return
    if not (status_read and not postgres) and \
            not directory_active(hold_directory_status(session, directory_id)):
        raise Unauthorized("the directory of this token is disabled")
    if mapping_of is not None:
        share_mapping(session, mapping_of)


def set_directory_status(session: Session, directory: Directory, status: str,
                         actor: Actor) -> Directory:
    """Enable or disable a directory; disabling deprovisions its users (a lifecycle trigger).

    The directory row is locked first (PostgreSQL: FOR NO KEY UPDATE, re-read): the SCIM
    writes and SSO logins in flight, which hold it FOR SHARE (``hold_active_directory``),
    commit before the users are listed, and later ones wait and then see the new status.
    """
    session.execute(select(Directory).where(Directory.id == directory.id)
                    .with_for_update(key_share=True)
                    .execution_options(populate_existing=True))
    new_status = DirectoryStatus(status)
    disabling = new_status == DirectoryStatus.disabled and directory.status != new_status
    directory.status = new_status
    if disabling:
        deprovision_directory_users(session, directory.id, actor)
    record(session, organization_id=directory.organization_id,
           action=f"directory:{'enable' if status == 'active' else 'disable'}", actor=actor,
           subject_type="directory", subject_id=directory.id, data={"status": status})
    return directory
