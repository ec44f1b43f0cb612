"""Directories: one SCIM connection from one IdP into one organization."""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.audit import Actor, record
from app.errors import Conflict, InvalidInput, NotFound, Unauthorized
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


# Step 0 of the lock order (app/mapping/reevaluation.py): the directory row comes before any
# group or user row. A SCIM write (or an SSO login through a connection bound to the
# directory) holds it FOR SHARE for its transaction; an enable or disable holds it FOR NO
# KEY UPDATE, which conflicts with that (and not with the FOR KEY SHARE of a foreign key
# check).
_HOLD = select(Directory.status).where(Directory.id == bindparam("b_id"))
_HOLD_SHARE = _HOLD.with_for_update(read=True)


def hold_active_directory(session: Session, directory_id: str, *,
                          status_read: bool = False) -> None:
    """Keep a directory from being disabled (or enabled) until this write transaction ends,
    and raise Unauthorized when it is disabled now.

    Authentication read the status before this transaction, or by a plain read in it: a
    disable committing meanwhile deprovisioned only the users it could see, and this
    transaction's users were left active, with their grants, in a directory whose tokens
    the IdP can no longer use to take them out. PostgreSQL: one ``FOR SHARE`` statement,
    which waits for a disable in flight and then reads its outcome (READ COMMITTED reads the
    row's latest version), and makes a later disable wait for this transaction before it
    lists the users to deprovision. SQLite: a plain read; this transaction holds the single
    write lock, so no disable can commit until it ends; ``status_read`` (authentication
    read the status in this very transaction) then leaves nothing to check.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    if status_read and not postgres:
        return
    status = session.execute(_HOLD_SHARE if postgres else _HOLD,
                             {"b_id": directory_id}).scalar()
    if status != DirectoryStatus.active:
        raise Unauthorized("the directory of this token is disabled")


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
