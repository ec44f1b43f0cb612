"""Directories: one SCIM connection from one IdP into one organization."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.errors import Conflict, InvalidInput, NotFound
from app.lifecycle.users import deprovision_directory_users
from app.models import Directory, Organization
from app.models.directory import DirectoryStatus, Vendor


def create_directory(session: Session, org: Organization, name: str, vendor: str,
                     actor: Actor) -> Directory:
    """Create a directory for ``org``; tokens are issued separately."""
    try:
        vendor_value = Vendor(vendor)
    except ValueError:
        names = ", ".join(v.value for v in Vendor)
        raise InvalidInput(f"vendor {vendor!r} is not one of {names}", field="vendor") from None
    exists = session.scalar(
        select(Directory.id).where(Directory.organization_id == org.id, Directory.name == name)
    )
    if exists:
        raise Conflict(f"directory {name!r} already exists in {org.slug}", field="name")
    directory = Directory(organization_id=org.id, name=name, vendor=vendor_value,
                          status=DirectoryStatus.active)
    session.add(directory)
    session.flush()
    record(session, organization_id=org.id, action="directory:create", actor=actor,
           subject_type="directory", subject_id=directory.id,
           data={"name": name, "vendor": vendor_value.value})
    return directory


def get_directory(session: Session, ref: str, org: Organization | None = None) -> Directory:
    """Find a directory by id (or by name within ``org``)."""
    stmt = select(Directory).where(Directory.id == ref)
    if org is not None:
        stmt = select(Directory).where(
            Directory.organization_id == org.id, (Directory.id == ref) | (Directory.name == ref)
        )
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


def set_directory_status(session: Session, directory: Directory, status: str,
                         actor: Actor) -> Directory:
    """Enable or disable a directory; disabling deprovisions its users (a lifecycle trigger)."""
    new_status = DirectoryStatus(status)
    disabling = new_status == DirectoryStatus.disabled and directory.status != new_status
    directory.status = new_status
    if disabling:
        deprovision_directory_users(session, directory.id, actor)
    record(session, organization_id=directory.organization_id,
           action=f"directory:{'enable' if status == 'active' else 'disable'}", actor=actor,
           subject_type="directory", subject_id=directory.id, data={"status": status})
    return directory
